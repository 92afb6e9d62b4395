# shellcheck shell=bash disable=SC2154 # root, data and keep are set by the sourcing script
# bench/lib.sh: what bench/run.sh and bench/bigstate.sh share. Sourced after
# they set root (the repository), data (the members' data directory) and keep
# (1 to leave data in place on exit).

# --- processes: every pid a script starts is in pids, or in aux_pid while
# in_bg waits for it; the trap stops only those.
pids=()
aux_pid=
stop_members() {
	[ ${#pids[@]} -gt 0 ] || return 0
	kill -TERM "${pids[@]}" 2>/dev/null || true
	for _ in $(seq 1 100); do
		local alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	kill -KILL "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
	pids=()
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$aux_pid" ]; then kill -TERM "$aux_pid" 2>/dev/null || true; fi
	stop_members
	if [ "$keep" = 0 ]; then rm -rf "$data"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_bg CMD...: runs CMD in the background and waits for it, returning its
# status. bash runs a trap only once the foreground command ends, and a load
# or a wrk run takes a while; the wait builtin is interrupted by the trap at
# once, and cleanup stops CMD. (wrk also handles SIGINT itself and exits 0.)
in_bg() {
	local rc=0
	"$@" &
	aux_pid=$!
	wait "$aux_pid" || rc=$?
	aux_pid=
	return $rc
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_health() { # url...
	local u code
	for u in "$@"; do
		for _ in $(seq 1 300); do
			code=$(curl -s -o /dev/null -w '%{http_code}' "$u/health" || true)
			[ "$code" = 200 ] && continue 2
			sleep 0.1
		done
		echo "no 200 from $u/health within 30 s; logs in $data" >&2
		return 1
	done
}

# wrk_figures FILE prints "req/s p50-ms p99-ms max-ms non-2xx socket-errors"
# from the BENCH line the wrk scripts write (bench/common.lua), and fails if
# the file has none.
wrk_figures() {
	local line
	line=$(grep '^BENCH ' "$1") || return 1
	get() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$line"; }
	awk -v n="$(get requests)" -v d="$(get duration_us)" -v p50="$(get p50_us)" -v p99="$(get p99_us)" \
		-v max="$(get max_us)" -v bad="$(get non2xx)" -v err="$(get socket_errors)" \
		'BEGIN { printf "%.0f %.2f %.2f %.1f %d %d\n", n / (d / 1e6), p50 / 1000, p99 / 1000, max / 1000, bad, err }'
}

# build_tools installs wrk if missing and builds ./raftexample and
# bench/bin/benchtool.
build_tools() {
	if ! command -v wrk >/dev/null; then
		echo "installing wrk"
		apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
	fi
	mkdir -p bench/bin
	echo "building raftexample and bench/benchtool"
	go build -o raftexample .
	go build -o bench/bin/benchtool ./bench/benchtool
}

# --- the machine
machine() {
	local src fstype dev parent rot driver
	read -r src fstype < <(findmnt -no SOURCE,FSTYPE -T "$root/bench")
	dev=$(basename "$src")
	parent=$(lsblk -no PKNAME "$src" 2>/dev/null | head -1 || true)
	[ -n "$parent" ] && dev=$parent
	rot=$(cat "/sys/block/$dev/queue/rotational" 2>/dev/null || echo '?')
	driver=$(basename "$(readlink -f "/sys/block/$dev/device/driver" 2>/dev/null)" 2>/dev/null || echo '?')
	echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "memory:  $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "kernel:  $(uname -sr)"
	echo "disk:    data in $data on $src ($fstype; device $dev, driver $driver, rotational=$rot)"
	echo "tools:   $(go version | cut -d' ' -f3-), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
	echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min load average before the run; other work on the machine skews results)"
}
