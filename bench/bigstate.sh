#!/usr/bin/env bash
# bench/bigstate.sh: measure raftexample against the "big state" targets
# (issue 16):
#
#   N keys (default 1,000,000) of 256 B: resident memory at most 2x the data;
#   a snapshot of them does not stall PUTs (PUT p99 while snapshots are taken
#   under 50 ms); a follower restarted from its snapshot is caught up in under
#   2 s; its data on disk (snapshot and WAL directories) at most 3x the data.
#
# It builds raftexample and bench/benchtool, starts a fresh 3-member cluster
# with its data on disk under bench/data-big/, loads the keys through the
# leader, reports each member's memory, runs wrk PUTs at the leader long
# enough for it to take a snapshot, then stops a follower with SIGTERM,
# restarts it and times how long it takes to serve again and catch up. It
# prints a summary with the targets, stops the cluster and removes its data
# (unless --keep). wrk's output and the summary go to bench/results/big-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() {
	cat <<'EOF'
usage: bench/bigstate.sh [flags]
  --keys N            keys to load (default 1000000)
  --value-bytes N     value size (default 256)
  --snap-count N      raftexample --snap-count: applied entries between snapshots
                      (default 10000, the server's; the PUT run must pass one on the leader)
  --duration D        wrk PUT run (default 30s)
  --conns N           wrk connections for the PUT run (default 16)
  --load-workers N    parallel connections of the loader (default 64)
  --base-port P       ports P+1 .. P+13 are used (default 28300; keep them below the
                      ephemeral range, net.ipv4.ip_local_port_range)
  --keep              keep bench/data-big/ (WAL, snapshots, member logs)
EOF
}

keys=1000000 value_bytes=256 snap_count=10000 duration=30s conns=16 load_workers=64
base_port=28300 keep=0
while [ $# -gt 0 ]; do
	case "$1" in
	--keys) keys=$2; shift ;;
	--value-bytes) value_bytes=$2; shift ;;
	--snap-count) snap_count=$2; shift ;;
	--duration) duration=$2; shift ;;
	--conns) conns=$2; shift ;;
	--load-workers) load_workers=$2; shift ;;
	--base-port) base_port=$2; shift ;;
	--keep) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "unknown flag $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
for n in keys value_bytes snap_count conns load_workers base_port; do
	if ! [[ ${!n} =~ ^[1-9][0-9]*$ ]]; then echo "--${n//_/-} must be a positive integer" >&2; exit 2; fi
done
read -r ephemeral_low ephemeral_high </proc/sys/net/ipv4/ip_local_port_range
if [ $((base_port + 13)) -ge "$ephemeral_low" ] && [ "$base_port" -le "$ephemeral_high" ]; then
	echo "warning: ports $((base_port + 1))-$((base_port + 13)) overlap the ephemeral range $ephemeral_low-$ephemeral_high" >&2
fi

started=$(date +%s)
data=$root/bench/data-big
out=$root/bench/results/big-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

# shellcheck source=bench/lib.sh
. bench/lib.sh
build_tools
machine | tee "$out/machine.txt"

# --- helpers
# The summary is built up in $out/summary.txt as the run goes and printed at
# the end.
note() { echo "$*" | tee -a "$out/summary.txt"; }
mib() { awk -v b="$1" 'BEGIN { if (b == "") print "-"; else printf "%.1f", b / 1048576 }'; }

# metric URL NAME: the value of an unlabelled sample in URL/metrics, or empty.
metric() {
	curl -s --max-time 10 "$1/metrics" | awk -v n="$2" '$1 == n { print $2; exit }' || true
}
# status_field URL FIELD: one field of GET URL/v1/status (see benchtool status).
status_field() {
	bench/bin/benchtool status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
# proc_bytes PID FIELD: VmRSS or VmHWM of a process, in bytes.
proc_bytes() {
	awk -v f="$2:" '$1 == f { printf "%.0f\n", $2 * 1024 }' "/proc/$1/status" 2>/dev/null || true
}

# data size: the bytes of all keys ("bench-<n>", n < keys) and values.
data_bytes=$(awk -v n="$keys" -v vb="$value_bytes" 'BEGIN {
	lo = 0; hi = 10; d = 1; total = 0
	while (lo < n) { c = (hi < n ? hi : n) - lo; total += c * (6 + d); lo = hi; hi *= 10; d++ }
	printf "%.0f", total + n * vb }')

peers="http://127.0.0.1:$((base_port + 1)),http://127.0.0.1:$((base_port + 2)),http://127.0.0.1:$((base_port + 3))"
urls=()
# GODEBUG=gctrace=1 makes the Go runtime log one line per GC to stderr (the
# member's log), with the heap left live after it: the nearest thing to "heap
# after a forced GC" that the server offers.
start_member() { # id: starts it, with the same flags every time
	local id=$1
	GODEBUG=gctrace=1 ./raftexample --id "$id" --cluster "$peers" --port "$((base_port + 10 + id))" --data-dir "$data" \
		--snap-count "$snap_count" 2>>"$data/member$id.log" &
	pids[id - 1]=$!
}

# live_heap ID: bytes of heap live after the member's last GC, from gctrace
# ("gc N @...: ..., A->B->C MB, ..."; C is live, in MiB).
live_heap() {
	grep -E '^gc [0-9]+ @' "$data/member$1.log" | tail -1 |
		sed -n 's/.* [0-9]*->[0-9]*->\([0-9]*\) MB.*/\1/p' | awk '{ printf "%.0f\n", $1 * 1048576 }'
}

# memory LABEL: each member's VmRSS, VmHWM and Go heap; sets rss_max to
# the largest RSS and raises hwm_max to the largest VmHWM.
hwm_max=0
memory() {
	local label=$1 id u rss hwm inuse alloc sys live
	rss_max=0
	note
	note "memory $label (data $(mib "$data_bytes") MiB):"
	note "$(printf '  %-8s %10s %10s %9s %14s %14s %12s %16s' member 'RSS MiB' 'HWM MiB' 'RSS/data' 'heap inuse MiB' 'heap alloc MiB' 'Go sys MiB' 'live at last GC')"
	for id in 1 2 3; do
		u=${urls[id - 1]}
		rss=$(proc_bytes "${pids[id - 1]}" VmRSS)
		hwm=$(proc_bytes "${pids[id - 1]}" VmHWM)
		inuse=$(metric "$u" go_memstats_heap_inuse_bytes)
		alloc=$(metric "$u" go_memstats_heap_alloc_bytes)
		sys=$(metric "$u" go_memstats_sys_bytes)
		live=$(live_heap "$id")
		if [ -n "$rss" ] && [ "$rss" -gt "$rss_max" ]; then rss_max=$rss; fi
		if [ -n "$hwm" ] && [ "$hwm" -gt "$hwm_max" ]; then hwm_max=$hwm; fi
		note "$(printf '  %-8s %10s %10s %9s %14s %14s %12s %16s' "$id$([ "$id" = "$lead" ] && echo ' (L)')" \
			"$(mib "$rss")" "$(mib "$hwm")" "$(awk -v r="$rss" -v d="$data_bytes" 'BEGIN { if (r == "") print "-"; else printf "%.2fx", r / d }')" \
			"$(mib "$inuse")" "$(mib "$alloc")" "$(mib "$sys")" "$(mib "$live")")"
	done
}

# dir_bytes DIR: the bytes DIR's files take on disk (du counts the WAL's
# preallocated segments in full, as the file system does).
dir_bytes() { du -sB1 "$1" | cut -f1; }
# dir_files DIR: how many files of each kind DIR holds ("3 .snap, 3 .db, ...").
dir_files() {
	find "$1" -type f | sed -n 's/.*\(\.[a-z]*\)$/\1/p; t; s/.*/other/p' | sort | uniq -c |
		awk '{ printf "%s%d %s", (NR > 1 ? ", " : ""), $1, $2 } END { if (NR == 0) printf "no files" }'
}

# snapshots ID: "count sum" of the member's snapshot-save histogram.
snapshots() {
	local u=${urls[$1 - 1]} c s
	c=$(metric "$u" raftexample_snapshot_save_duration_seconds_count)
	s=$(metric "$u" raftexample_snapshot_save_duration_seconds_sum)
	echo "${c:-0} ${s:-0}"
}

# find_leader: sets lead (member id) and lead_url, polling up to 10 s, since
# there is no leader during an election.
find_leader() {
	lead=
	for _ in $(seq 1 100); do
		lead=$(bench/bin/benchtool leader "${urls[@]}" 2>/dev/null) && break
		sleep 0.1
	done
	[ -n "$lead" ] || { echo "no leader within 10 s; logs in $data" >&2; exit 1; }
	lead_url=${urls[lead - 1]}
}

# leader_since WHAT LEAD TERM: finds the leader again (setting lead, lead_url
# and term_now) and notes it if leadership moved since member LEAD led at TERM.
leader_since() {
	local what=$1 was=$2 was_term=$3
	find_leader
	term_now=$(status_field "$lead_url" term)
	if [ "$lead" != "$was" ] || [ "$term_now" != "$was_term" ]; then
		note "note: leadership changed during $what: member $lead leads at term $term_now (member $was at term $was_term before)"
	fi
}

for p in $(seq $((base_port + 1)) $((base_port + 13))); do
	port_free "$p" || { echo "port $p is in use; pick other ports with --base-port" >&2; exit 1; }
done
rm -rf "$data"
mkdir -p "$data"

note
note "== $keys keys of $value_bytes B = $(mib "$data_bytes") MiB of keys and values; --snap-count $snap_count"
note "== starting 3 members"
for id in 1 2 3; do
	start_member "$id"
	urls+=("http://127.0.0.1:$((base_port + 10 + id))")
done
wait_health "${urls[@]}"
find_leader
term0=$(status_field "$lead_url" term)
note "member $lead leads ($lead_url, term $term0); the load goes to it"

# --- 1. load
note
note "== loading $keys keys through the leader ($load_workers connections)"
# timeout bounds the load: a server that stalls must not hang the run. It
# allows 900 s a million keys (a loaded 2-core machine took 740 s for one
# million), so that 3,000,000 keys can finish.
load_timeout=$((keys < 1000000 ? 900 : keys * 900 / 1000000))
load_rc=0
in_bg timeout "$load_timeout" bench/bin/benchtool load -url "$lead_url" -keys "$keys" -value-bytes "$value_bytes" \
	-workers "$load_workers" >"$out/load.txt" 2>&1 || load_rc=$?
tee -a "$out/summary.txt" <"$out/load.txt"
if [ $load_rc != 0 ]; then
	echo "loading failed (exit $load_rc; 124: it took over $load_timeout s); logs in $data" >&2
	exit 1
fi
load_rate=$(sed -n 's/^loaded .*(\([0-9]*\)\/s.*/\1/p' "$out/load.txt")
load_s=$(sed -n 's/^loaded .* in \([0-9.]*\) s .*/\1/p' "$out/load.txt")
# The followers apply a little behind; let them catch up with the leader's
# commit before measuring them (bounded: 60 s).
commit=$(status_field "$lead_url" commit)
for id in 1 2 3; do
	in_bg bench/bin/benchtool catchup -url "${urls[id - 1]}" -applied "$commit" -deadline 60s >/dev/null ||
		echo "member $id did not apply index $commit within 60 s" >&2
done
for id in 1 2 3; do
	read -r c _ < <(snapshots "$id")
	c=$(awk -v c="$c" 'BEGIN { printf "%d", c }')
	note "member $id: keys $(status_field "${urls[id - 1]}" keys), applied $(status_field "${urls[id - 1]}" applied), $c snapshots taken during the load"
done
leader_since "the load" "$lead" "$term0"
term1=$term_now
memory "after the load"
rss_load_max=$rss_max

# --- 2. PUTs while the leader takes a snapshot
applied=$(status_field "$lead_url" applied)
snap_index=$(status_field "$lead_url" snapshotIndex)
note
note "== PUT run: wrk -c$conns -d$duration at the leader, member $lead"
note "leader: applied $applied, last snapshot at $snap_index: next snapshot after $((snap_count - (applied - snap_index) + 1)) more entries"
declare -a snap_c0 snap_s0 snap_c1 snap_s1
for id in 1 2 3; do read -r "snap_c0[id]" "snap_s0[id]" < <(snapshots "$id"); done
log_lines0=()
for id in 1 2 3; do log_lines0[id]=$(wc -l <"$data/member$id.log"); done
t=$((conns < 2 ? conns : 2))
in_bg wrk -t"$t" -c"$conns" -d"$duration" --timeout 10s -s bench/put.lua "$lead_url" -- "$keys" "$value_bytes" >"$out/wrk-put.txt" 2>&1 || true
put_rps=- put_p50=- put_p99=- put_max=- put_bad=- put_err=-
if figures=$(wrk_figures "$out/wrk-put.txt"); then
	read -r put_rps put_p50 put_p99 put_max put_bad put_err <<<"$figures"
else
	echo "wrk failed, see $out/wrk-put.txt" >&2
fi
note "$put_rps req/s  p50 $put_p50 ms  p99 $put_p99 ms  max $put_max ms  non-2xx $put_bad  errors $put_err"
lead_snaps=0 lead_snap_mean=-
for id in 1 2 3; do
	read -r "snap_c1[id]" "snap_s1[id]" < <(snapshots "$id")
	n=$(awk -v a="${snap_c0[id]}" -v b="${snap_c1[id]}" 'BEGIN { printf "%d", b - a }')
	mean=$(awk -v n="$n" -v a="${snap_s0[id]}" -v b="${snap_s1[id]}" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / n; else print "-" }')
	saved=$(tail -n +"$((log_lines0[id] + 1))" "$data/member$id.log" | grep -c 'snapshot saved' || true)
	note "member $id$([ "$id" = "$lead" ] && echo ' (leader)'): $n snapshots during the run (log: $saved 'snapshot saved'), mean save time $mean s"
	if [ "$id" = "$lead" ]; then lead_snaps=$n lead_snap_mean=$mean; fi
done
leader_since "the run" "$lead" "$term1"
term2=$term_now
if [ "$lead_snaps" = 0 ]; then
	note "note: the leader took no snapshot during the run; raise --duration or lower --snap-count"
fi
memory "after the PUT run"

# --- 3. restart a follower from its snapshot
f=$((lead % 3 + 1))
note
note "== restart: SIGTERM follower member $f, restart it, wait for /health 200 and applied = the leader's commit"
target=$(status_field "$lead_url" commit)
fpid=${pids[f - 1]}
kill -TERM "$fpid"
stop_deadline=$(($(date +%s) + 30))
while kill -0 "$fpid" 2>/dev/null; do
	if [ "$(date +%s)" -ge "$stop_deadline" ]; then
		note "member $f did not exit within 30 s of SIGTERM; killing it"
		kill -KILL "$fpid" 2>/dev/null || true
		break
	fi
	sleep 0.05
done
frc=0
wait "$fpid" 2>/dev/null || frc=$?
note "member $f exited with code $frc; leader's commit $target"
# What the stopped follower keeps on disk, which is what its restart reads.
snap_dir=$data/raftexample-$f-snap wal_dir=$data/raftexample-$f
snap_bytes=$(dir_bytes "$snap_dir")
wal_bytes=$(dir_bytes "$wal_dir")
disk_bytes=$((snap_bytes + wal_bytes))
disk_ratio=$(awk -v b="$disk_bytes" -v d="$data_bytes" 'BEGIN { printf "%.2f", b / d }')
note "on disk: snap dir $(mib "$snap_bytes") MiB ($(dir_files "$snap_dir")), wal dir $(mib "$wal_bytes") MiB ($(dir_files "$wal_dir"))"
note "on disk: total $(mib "$disk_bytes") MiB = ${disk_ratio}x the data (target <= 3x)"
restart_log0=$(wc -l <"$data/member$f.log")
t0=$(date +%s%N)
start_member "$f"
restart_s=- health_s=-
if in_bg bench/bin/benchtool catchup -url "${urls[f - 1]}" -applied "$target" -since "$t0" -poll 50ms -deadline 120s \
	>"$out/restart.txt" 2>&1; then
	r=$(cat "$out/restart.txt")
	health_s=$(sed -n 's/.*health_s=\([0-9.]*\).*/\1/p' <<<"$r")
	restart_s=$(sed -n 's/.*applied_s=\([0-9.]*\).*/\1/p' <<<"$r")
	note "member $f: /health 200 after $health_s s, applied $target after $restart_s s"
	# Where the time went: the storage is read (WAL, snapshot file) before
	# the HTTP port opens; the snapshot's decode and catching up come after.
	restart_log=$(tail -n +"$((restart_log0 + 1))" "$data/member$f.log")
	served=$(grep -m1 'serving HTTP' <<<"$restart_log" | cut -f1 || true)
	if [ -n "$served" ] && served_ns=$(date -d "$served" +%s%N 2>/dev/null); then
		note "member $f: storage read and HTTP served after $(awk -v a="$served_ns" -v b="$t0" 'BEGIN { printf "%.2f", (a - b) / 1e9 }') s; $(grep -c '^gc [0-9]* @' <<<"$restart_log" || true) collections until caught up"
	fi
else
	note "member $f: $(cat "$out/restart.txt")"
fi
restart_hwm=$(proc_bytes "${pids[f - 1]}" VmHWM)
restart_rss=$(proc_bytes "${pids[f - 1]}" VmRSS)
note "member $f after the restart: RSS $(mib "$restart_rss") MiB, HWM $(mib "$restart_hwm") MiB, live heap at last GC $(mib "$(live_heap "$f")") MiB"

# --- summary
met() { if [ "$1" = 1 ]; then echo met; elif [ "$1" = 0 ]; then echo 'not met'; else echo "$1"; fi; }
ratio=$(awk -v r="$rss_load_max" -v d="$data_bytes" 'BEGIN { printf "%.2f", r / d }')
mem_ok=$(awk -v r="$ratio" 'BEGIN { print (r <= 2) ? 1 : 0 }')
if [ "$put_p99" = - ]; then
	p99_ok='not measured (wrk failed)'
elif [ "$lead_snaps" = 0 ]; then
	p99_ok='not measured (no snapshot)'
else
	p99_ok=$(awk -v p="$put_p99" 'BEGIN { print (p < 50) ? 1 : 0 }')
fi
if [ "$restart_s" = - ]; then
	restart_ok='not met (no catch-up within 120 s)'
else
	restart_ok=$(awk -v s="$restart_s" 'BEGIN { print (s < 2) ? 1 : 0 }')
fi
disk_ok=$(awk -v r="$disk_ratio" 'BEGIN { print (r <= 3) ? 1 : 0 }')
{
	echo
	echo "summary: $keys keys of $value_bytes B ($(mib "$data_bytes") MiB), --snap-count $snap_count, PUT run -c$conns -d$duration"
	printf '| %-44s | %24s | %-14s | %s\n' measure figure target result
	printf '|%s|%s|%s|%s\n' ---------------------------------------------- --------------------------: ---------------- --------
	printf '| %-44s | %24s | %-14s |\n' 'load rate' "$load_rate keys/s ($load_s s)" ''
	printf '| %-44s | %24s | %-14s | %s\n' 'RSS after load, largest member / data' "$(mib "$rss_load_max") MiB = ${ratio}x" '<= 2x' "$(met "$mem_ok")"
	printf '| %-44s | %24s | %-14s |\n' 'peak RSS (VmHWM), largest member / data' "$(mib "$hwm_max") MiB = $(awk -v r="$hwm_max" -v d="$data_bytes" 'BEGIN { printf "%.2f", r / d }')x" ''
	printf '| %-44s | %24s | %-14s |\n' 'elections (terms) during load / PUT run' "$((term1 - term0)) / $((term2 - term1))" ''
	printf '| %-44s | %24s | %-14s |\n' 'PUT req/s during the run' "$put_rps" ''
	printf '| %-44s | %24s | %-14s |\n' 'snapshots by the leader during the run' "$lead_snaps (mean $lead_snap_mean s)" '>= 1'
	printf '| %-44s | %24s | %-14s | %s\n' 'PUT p99 during the run (p50, max)' "$put_p99 ms ($put_p50, $put_max)" '< 50 ms' "$(met "$p99_ok")"
	printf '| %-44s | %24s | %-14s |\n' 'follower snap dir / wal dir on disk' "$(mib "$snap_bytes") / $(mib "$wal_bytes") MiB" ''
	printf '| %-44s | %24s | %-14s | %s\n' 'follower on disk (snap + wal) / data' "$(mib "$disk_bytes") MiB = ${disk_ratio}x" '<= 3x' "$(met "$disk_ok")"
	printf '| %-44s | %24s | %-14s |\n' 'restart: /health 200' "$health_s s" ''
	printf '| %-44s | %24s | %-14s | %s\n' "restart: applied the leader's commit" "$restart_s s" '< 2 s' "$(met "$restart_ok")"
	echo
	echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); took $(($(date +%s) - started)) s; output in ${out#"$root"/}/"
} | tee -a "$out/summary.txt"
if [ $keep = 1 ]; then echo "data and member logs kept in ${data#"$root"/}/"; fi
