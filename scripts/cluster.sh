#!/usr/bin/env bash
# Runs the Procfile's members in the foreground, the way goreman or foreman
# would, for machines that have only Go.
#
#   scripts/cluster.sh        build ./raftexample, start the members, wait
#                             until each answers /health, and keep running;
#                             Ctrl-C stops them
#   scripts/cluster.sh stop   stop every member that has a pid file in logs/
#
# Each member appends its output to logs/<name>.log and has its pid in
# logs/<name>.pid. Stopping (Ctrl-C, or "stop" from another terminal) sends
# SIGINT to every member with a pid file in logs/, those the README starts by
# hand too, waits until each has exited, and removes the pid files, as well
# as stale ones whose process is gone. SIGINT, because the whole cluster is
# stopping: no leader tries to hand over to followers that stop with it.
# A member that exits while the cluster starts is reported, the others are
# stopped, and the script exits 1.
#
# Data stays in raftexample-<id>/ and raftexample-<id>-snap/: running the
# script again restarts the same cluster. Remove those to start afresh.
#
# Environment: PROCFILE (default Procfile) names the members to run;
# NO_BUILD=1 runs the ./raftexample that is there without building it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs

# is_member PID: a live process (not a zombie) of raftexample runs as PID,
# so a pid file whose number the system gave to something else since is
# stale.
is_member() {
	local info
	[[ "$1" =~ ^[0-9]+$ ]] || return 1
	info=$(ps -o stat= -o command= -p "$1" 2>/dev/null) || return 1
	info=${info#"${info%%[![:space:]]*}"}
	case "$info" in Z*) return 1 ;; esac
	[[ "$info" == *raftexample* ]]
}

# stop_members: SIGINT to every member with a pid file, then wait for each.
stop_members() {
	local f name pid i
	local stop_names=() stop_pids=()
	for f in logs/*.pid; do
		[ -e "$f" ] || continue
		name=$(basename "$f" .pid)
		pid=$(cat "$f" 2>/dev/null || true)
		if is_member "$pid"; then
			kill -INT "$pid" 2>/dev/null || true
			stop_names+=("$name")
			stop_pids+=("$pid")
		elif [[ " ${pids[*]-} " == *" $pid "* ]]; then
			# One of ours that exited already: a Ctrl-C reaches every
			# process of the terminal's job, our members too.
			echo "stopped $name (pid $pid)"
			rm -f "$f"
		else
			echo "removing stale $f (no member runs as pid ${pid:-?})"
			rm -f "$f"
		fi
	done
	[ ${#stop_pids[@]} -gt 0 ] || return 0 # bash before 4.4 calls an empty array unbound
	for i in "${!stop_pids[@]}"; do
		# A member lets requests in flight finish (up to --request-timeout).
		for _ in $(seq 1 300); do
			is_member "${stop_pids[i]}" || break
			sleep 0.1
		done
		if is_member "${stop_pids[i]}"; then
			echo "${stop_names[i]} (pid ${stop_pids[i]}) did not stop within 30 s; see logs/${stop_names[i]}.log" >&2
			status=1
		else
			echo "stopped ${stop_names[i]} (pid ${stop_pids[i]})"
			rm -f "logs/${stop_names[i]}.pid"
		fi
	done
}

status=0
names=() pids=() # the members this script started
case "${1:-}" in
stop)
	stop_members
	exit "$status"
	;;
"") ;;
*)
	echo "usage: $0 [stop]" >&2
	exit 2
	;;
esac

for f in logs/*.pid; do
	[ -e "$f" ] || continue
	pid=$(cat "$f" 2>/dev/null || true)
	if is_member "$pid"; then
		echo "$(basename "$f" .pid) is already running (pid $pid); stop it first: $0 stop" >&2
		exit 1
	fi
	echo "removing stale $f (no member runs as pid ${pid:-?})"
	rm -f "$f"
done

[ -n "${NO_BUILD:-}" ] || go build -o raftexample .

stopped=
on_exit() {
	trap - INT TERM EXIT
	[ -z "$stopped" ] || return 0
	stopped=1
	echo "stopping the cluster"
	stop_members
	wait 2>/dev/null || true # reap our own members
}
trap 'on_exit; exit "$status"' INT TERM
trap on_exit EXIT

ports=()
while IFS= read -r line || [ -n "$line" ]; do
	case "$line" in '' | '#'*) continue ;; esac
	name=${line%%:*}
	read -r -a cmd <<<"${line#*:}"
	echo "==== $(date -u +%Y-%m-%dT%H:%M:%SZ) scripts/cluster.sh starts: ${cmd[*]}" >>"logs/$name.log"
	"${cmd[@]}" >>"logs/$name.log" 2>&1 &
	names+=("$name")
	pids+=($!)
	echo $! >"logs/$name.pid"
	# The HTTP port is the value after --port.
	for ((i = 0; i < ${#cmd[@]} - 1; i++)); do
		[ "${cmd[i]}" = --port ] && ports+=("${cmd[i + 1]}")
	done
	echo "started $name (pid $!), logging to logs/$name.log"
done <"${PROCFILE:-Procfile}"
if [ ${#ports[@]} -eq 0 ]; then
	echo "${PROCFILE:-Procfile} names no member with --port" >&2
	status=1
	exit 1
fi

# reason LOG: the errors of the last run in LOG (after its ==== line), or the
# end of that run when it logged none.
reason() {
	local run
	run=$(awk '/^==== /{n=0; split("", l)} {l[n++]=$0} END{for(i=0;i<n;i++) print l[i]}' "$1")
	grep -E 'ERROR|FATAL|panic' <<<"$run" | tail -n 3 || tail -n 5 <<<"$run"
}

# all_alive: every member started is still running, or the script reports
# the first that is not and exits 1 (which stops the others).
all_alive() {
	local j code
	for j in "${!pids[@]}"; do
		is_member "${pids[j]}" && continue
		code=0
		wait "${pids[j]}" 2>/dev/null || code=$?
		rm -f "logs/${names[j]}.pid"
		echo "${names[j]} exited during start (exit code $code); from logs/${names[j]}.log:" >&2
		reason "logs/${names[j]}.log" >&2
		status=1
		exit 1
	done
}

# Wait until every member answers /health with 200: it knows a leader.
for port in "${ports[@]}"; do
	up=
	for _ in $(seq 1 300); do
		all_alive
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)
		if [ "$code" = 200 ]; then
			up=1
			break
		fi
		sleep 0.1
	done
	if [ -z "$up" ]; then
		echo "the member on port $port did not answer /health with 200 within 30 s; see logs/" >&2
		status=1
		exit 1
	fi
done
all_alive
echo "cluster is up: try  curl -L http://127.0.0.1:${ports[0]}/my-key -XPUT -d hello"
echo "press Ctrl-C to stop"
wait || true
