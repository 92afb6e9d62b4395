#!/usr/bin/env bash
# bench/run.sh: build raftexample, start a fresh 3-member cluster with its data
# on disk under bench/data/, load the key space, run wrk (PUT, linearizable GET,
# serializable GET of random keys) at 1, 16 and 256 connections, print a table
# and the machine, stop the cluster and remove its data.
#
# With --etcd, do the same in the same run against a 3-member etcd 3.7.3
# cluster through its HTTP/JSON gateway, and print raftexample/etcd ratios.
# etcd is built once from the Go module proxy and cached in
# ~/.cache/raftexample-bench/etcd-3.7.3/ (override with $BENCH_CACHE).
#
# All traffic goes to one member, the leader by default (--target follower
# picks a follower), the same for both systems; but PUT c1 runs against both
# the leader and a follower (the rows put and put-follower; put-leader with
# --target follower), one after the other, to show what the follower's hop
# costs (--no-follower-c1 skips the second).
#
# Before any cluster starts, the run measures the machine's floors in the
# members' data directory (bench/benchtool probe.go): a 4 KiB write +
# fdatasync in a preallocated file, as the WAL does, and a loopback round
# trip (TCP, and HTTP/1.1 through net/http); and, when get-serializable is
# among the workloads, a do-nothing Go net/http server (benchtool null)
# under the serializable GET's wrk script at the same connection counts
# (the "null" rows; --no-null skips it). The table's header judges PUT c1
# against 2 x (fsync p50 + round trip p50) and serializable GET against the
# null server, and the ratios to etcd against issue #16's targets.
#
# Three workloads are raftexample's only (etcd rows are skipped):
#   put-if  conditional PUTs (If-Match: "<modRevision>", bench/put-if.lua), the
#           revisions listed just before each run; compare with put at the same
#           connections, e.g. --workloads "put put-if" --conns "16 256".
#   txn     POST /v1/txn (bench/txn.lua): if one key exists, put it and another
#           (2 PUTs of --value-bytes over put's key space, one revision); compare
#           with put at the same connections, e.g. --workloads "put txn". This
#           harness has no etcd equivalent: its rows say n/a.
#   watch   bench/benchtool watch: PUTs at --watch-conns connections to the
#           leader without watchers, with --watchers watch streams on one prefix
#           spread over the members, and without again; PUT/s, delivered events/s,
#           notification latency (write acknowledged -> event delivered), streams
#           cut. Runs once, whatever --conns says. --profile adds a CPU profile
#           of the leader during the PUTs with watchers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() {
	cat <<'EOF'
usage: bench/run.sh [flags]
  --etcd              also benchmark etcd 3.7.3 (HTTP/JSON gateway) and print ratios
  --etcd-only         benchmark only etcd
  --duration D        wrk duration per run (default 10s)
  --conns "LIST"      connection counts (default "1 16 256")
  --workloads "LIST"  among put get get-serializable put-if txn watch (default
                      "put get get-serializable"); put-if, txn and watch: raftexample only
  --keys N            key space (default 100000), loaded before the runs
  --value-bytes N     value size (default 256)
  --target T          leader or follower: the one member all requests go to (default leader)
  --no-follower-c1    skip PUT c1 against the other member (a follower, or the leader
                      with --target follower)
  --no-null           skip the do-nothing net/http server's rows
  --base-port P       ports P+1 .. P+34 are used (default 28100; keep them below the
                      ephemeral range, net.ipv4.ip_local_port_range, or an outgoing
                      connection may hold one when a member binds it)
  --watchers "LIST"   watch streams in the watch workload, one run each (default 1000)
  --watch-conns C     PUT connections in the watch workload (default 16)
  --watch-on M        the members the watchers are spread over: all, followers or
                      leader (default all)
  --profile           members run with --pprof; the watch workload saves a CPU
                      profile of the leader (during the PUTs with watchers) in
                      bench/results/<time>/ and prints its top functions
  --keep              copy the members' logs into bench/results/<time>/
EOF
}

etcd=0 raftexample=1 duration=10s conns="1 16 256" workloads="put get get-serializable"
keys=100000 value_bytes=256 target=leader base_port=28100 keep=0
watchers=1000 watch_conns=16 watch_on=all profile=0 follower_c1=1 null=1
while [ $# -gt 0 ]; do
	case "$1" in
	--etcd) etcd=1 ;;
	--etcd-only) etcd=1 raftexample=0 ;;
	--duration) duration=$2; shift ;;
	--conns) conns=$2; shift ;;
	--workloads) workloads=$2; shift ;;
	--keys) keys=$2; shift ;;
	--value-bytes) value_bytes=$2; shift ;;
	--target) target=$2; shift ;;
	--base-port) base_port=$2; shift ;;
	--watchers) watchers=$2; shift ;;
	--watch-conns) watch_conns=$2; shift ;;
	--watch-on) watch_on=$2; shift ;;
	--profile) profile=1 ;;
	--keep) keep=1 ;;
	--no-follower-c1) follower_c1=0 ;;
	--no-null) null=0 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "unknown flag $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
case "$target" in leader | follower) ;; *) echo "--target must be leader or follower" >&2; exit 2 ;; esac
read -r ephemeral_low ephemeral_high </proc/sys/net/ipv4/ip_local_port_range
if [ $((base_port + 34)) -ge "$ephemeral_low" ] && [ "$base_port" -le "$ephemeral_high" ]; then
	echo "warning: ports $((base_port + 1))-$((base_port + 34)) overlap the ephemeral range $ephemeral_low-$ephemeral_high" >&2
fi

started=$(date +%s)
data=$root/bench/data
out=$root/bench/results/$(date +%Y%m%d-%H%M%S)
cache=${BENCH_CACHE:-$HOME/.cache/raftexample-bench}
mkdir -p "$out"

# shellcheck source=bench/lib.sh
. bench/lib.sh
build_tools
etcd_bin=$cache/etcd-3.7.3/etcd
if [ $etcd = 1 ] && [ ! -x "$etcd_bin" ]; then
	echo "building etcd 3.7.3 in $cache/etcd-3.7.3 (once)"
	mkdir -p "$cache/etcd-3.7.3"
	(
		cd "$cache/etcd-3.7.3"
		cat >main.go <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
		printf 'module etcdbench\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v3.7.3\n' >go.mod
		go mod tidy
		go build -o etcd.tmp . && mv etcd.tmp etcd
	)
fi
machine | tee "$out/machine.txt"

# --- one wrk run: appends "system workload conns req/s p50 p99 max non2xx errors" to results.tsv
# Script arguments after "--": key space, value bytes, wrk threads, and for
# put-if the file of the keys' revisions.
run_wrk() { # system script workload conns url
	local system=$1 script=$2 workload=$3 c=$4 url=$5 t figures revs="" codes0="" rev0=""
	t=$((c < 2 ? c : 2))
	local log=$out/$system-$workload-c$c.txt n=1
	while [ -e "$log" ]; do n=$((n + 1)); log=$out/$system-$workload-c$c-$n.txt; done
	if [ "$workload" = put-if ]; then
		revs=$data/revs.txt
		bench/bin/benchtool revs -url "$url" -prefix bench- -out "$revs"
		codes0=$(bench/bin/benchtool codes -url "$url" -method PUT)
	fi
	if [ "$workload" = txn ]; then
		codes0=$(bench/bin/benchtool codes -url "$url" -method POST -route /v1/txn)
		rev0=$(status_revision "$url") || rev0=""
	fi
	in_bg wrk -t"$t" -c"$c" -d"$duration" --timeout 10s -s "bench/$script.lua" "$url" -- "$keys" "$value_bytes" "$t" "$revs" >"$log" 2>&1 || true
	if ! figures=$(wrk_figures "$log"); then
		echo "wrk failed for $system $workload c$c, see $log" >&2
		figures="- - - - - -"
	fi
	printf '%s\t%s\t%s\t%s\n' "$system" "$workload" "$c" "${figures// /$'\t'}" >>"$out/results.tsv"
	tail -1 "$out/results.tsv" | awk -F'\t' '{ printf "  %-16s c=%-4s %8s req/s  p50 %7s ms  p99 %7s ms  max %6s ms  non-2xx %s  errors %s\n", $2, $3, $4, $5, $6, $7, $8, $9 }'
	if [ "$workload" = put-if ]; then
		# The member's own count of its PUT answers by code, over the run.
		local codes1 n412 total
		codes1=$(bench/bin/benchtool codes -url "$url" -method PUT)
		read -r n412 total < <(code_delta "$codes0" "$codes1" 412)
		printf '%s\t%s\t%s\t%s\n' "$system" "$c" "$n412" "$total" >>"$out/put-if.tsv"
		echo "  put-if           c=$c  the member answered $total PUTs, $n412 of them 412"
		if [ "$total" -gt 0 ] && [ $((n412 * 100)) -gt "$total" ]; then
			echo "  put-if: more than 1% 412: the run wrote more PUTs than there are keys (each wrk thread came back to keys whose revision had moved on); raise --keys" >&2
		fi
	fi
	if [ "$workload" = txn ]; then
		# wrk sees only the status (200 whether the compare held or not): a
		# transaction that wrote moved the member's revision by one, one
		# that did not left it, and nothing else writes during the run. The
		# member counts every transaction it answered, those in flight when
		# wrk stopped and closed its connections too (503, the client gone:
		# about one per connection), which may have been committed all the
		# same; so wrote is over all the answers, not the 200s.
		local codes1 rev1 n200 total moved=-
		sleep 1 # the answers to the transactions in flight when wrk stopped
		codes1=$(bench/bin/benchtool codes -url "$url" -method POST -route /v1/txn)
		rev1=$(status_revision "$url") || rev1=""
		read -r n200 total < <(code_delta "$codes0" "$codes1" 200)
		[ -n "$rev0" ] && [ -n "$rev1" ] && moved=$((rev1 - rev0))
		printf '%s\t%s\t%s\t%s\t%s\n' "$system" "$c" "$n200" "$total" "$moved" >>"$out/txn.tsv"
		echo "  txn              c=$c  the member answered $total transactions, by code $(code_diff "$codes0" "$codes1"); its revision moved by $moved (the transactions that wrote)"
		if [ "$moved" = - ]; then
			echo "  txn: no revision in the member's /v1/status" >&2
		elif [ "$total" -gt 0 ] && [ $((moved * 100)) -lt $((total * 99)) ]; then
			echo "  txn: fewer than 99% of the transactions wrote (a compare failed: is the key space loaded?)" >&2
		fi
	fi
}

# status_revision URL: the member's store revision (GET /v1/status).
status_revision() {
	bench/bin/benchtool status "$1" | tr ' ' '\n' | sed -n 's/^revision=//p'
}

# code_diff BEFORE AFTER: "code=count ..." of the answers between two lines
# of benchtool codes.
code_diff() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); before[kv[1]] = kv[2] }
		n = split(b, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); d = kv[2] - before[kv[1]]; if (d) { printf "%s%s=%d", sep, kv[1], d; sep = " " } }
		print "" }'
}

# code_delta BEFORE AFTER CODE: "N TOTAL", the answers with CODE and all
# answers between two "code=count ..." lines of benchtool codes.
code_delta() {
	awk -v a="$1" -v b="$2" -v code="$3" 'BEGIN {
		n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); before[kv[1]] = kv[2] }
		n = split(b, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); d = kv[2] - before[kv[1]]; all += d; if (kv[1] == code) f = d }
		printf "%d %d\n", f, all }'
}

# The watch workload: bench/benchtool watch, its WATCH lines into watch.tsv.
run_watch() { # url...
	local n log prof
	for n in $watchers; do
		log=$out/raftexample-watch-$n.txt prof=()
		[ $profile = 1 ] && prof=(-profile "$out/leader-watch-$n.pprof")
		echo "  watch: $n watchers, PUTs at $watch_conns connections, 3 phases of $duration (output in ${log#"$root"/})"
		in_bg bench/bin/benchtool watch -urls "$(IFS=,; echo "$*")" -leader "$target_url" -watchers "$n" -on "$watch_on" \
			-conns "$watch_conns" -duration "$duration" -value-bytes "$value_bytes" -prefix watch- "${prof[@]}" >"$log" 2>&1 || true
		grep -v '^WATCH' "$log" | sed 's/^/  /'
		grep '^WATCH ' "$log" | sed "s/^WATCH /set=$n /" >>"$out/watch.tsv" || echo "benchtool watch failed, see $log" >&2
		if [ $profile = 1 ] && [ -s "$out/leader-watch-$n.pprof" ]; then
			echo "  CPU profile of the leader during the PUTs with $n watchers (${out#"$root"/}/leader-watch-$n.pprof):"
			go tool pprof -top -nodecount=25 ./raftexample "$out/leader-watch-$n.pprof" 2>/dev/null | tee "$out/leader-watch-$n-top.txt" | sed 's/^/    /'
			echo "  and where its goroutines were, halfway: ${out#"$root"/}/leader-watch-$n.pprof.goroutines.txt"
		fi
	done
}

# --- a cluster: start_cluster system → sets urls (client URLs) and target_url
start_raftexample() {
	local pprof_flag=()
	[ $profile = 1 ] && pprof_flag=(--pprof)
	local peers="http://127.0.0.1:$((base_port + 1)),http://127.0.0.1:$((base_port + 2)),http://127.0.0.1:$((base_port + 3))"
	urls=()
	mkdir -p "$data/raftexample"
	for id in 1 2 3; do
		local port=$((base_port + 10 + id))
		./raftexample --id "$id" --cluster "$peers" --port "$port" --data-dir "$data/raftexample" "${pprof_flag[@]}" \
			2>"$data/raftexample/member$id.log" &
		pids+=($!)
		urls+=("http://127.0.0.1:$port")
	done
}
start_etcd() {
	local initial="" id
	for id in 1 2 3; do initial+="${initial:+,}e$id=http://127.0.0.1:$((base_port + 20 + id))"; done
	urls=()
	mkdir -p "$data/etcd"
	for id in 1 2 3; do
		local peer=http://127.0.0.1:$((base_port + 20 + id)) client=http://127.0.0.1:$((base_port + 30 + id))
		"$etcd_bin" --name "e$id" --data-dir "$data/etcd/e$id" \
			--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
			--listen-client-urls "$client" --advertise-client-urls "$client" \
			--initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token bench \
			--log-level warn 2>"$data/etcd/e$id.log" &
		pids+=($!)
		urls+=("$client")
	done
}

bench_system() { # raftexample|etcd
	local system=$1 p prefix=""
	[ "$system" = etcd ] && prefix=etcd-
	for p in $(seq $((base_port + 1)) $((base_port + 33))); do
		port_free "$p" || { echo "port $p is in use; pick other ports with --base-port" >&2; exit 1; }
	done
	echo
	echo "== $system: starting 3 members"
	rm -rf "${data:?}/$system" # a fresh cluster, whatever an interrupted run left
	"start_$system"
	wait_health "${urls[@]}"
	local lead idx other_url
	lead=$(bench/bin/benchtool leader -kind "$system" "${urls[@]}")
	idx=$lead other_url=${urls[lead % 3]}
	if [ "$target" = follower ]; then idx=$((lead % 3 + 1)) other_url=${urls[lead - 1]}; fi
	target_url=${urls[idx - 1]}
	echo "$system: member $lead leads; all requests go to member $idx ($target, $target_url)" | tee -a "$out/machine.txt"
	if [ $follower_c1 = 1 ] && [[ " $workloads " == *" put "* ]] && [[ " $conns " == *" 1 "* ]]; then
		echo "$system: put-$other c1 goes to ${other_url} (the $other)" | tee -a "$out/machine.txt"
	fi
	# The key space the wrk workloads use (the watch workload writes its own).
	if tr ' ' '\n' <<<"$workloads" | grep -qvx 'watch\|'; then
		bench/bin/benchtool load -kind "$system" -url "$target_url" -keys "$keys" -value-bytes "$value_bytes" | tee -a "$out/machine.txt"
	fi
	# Connection counts outside, workloads inside: the rows to compare (put
	# and put-if at 16, say) run one after the other, under the same
	# conditions on a shared machine.
	local w c
	for c in $conns; do
		for w in $workloads; do
			case "$system/$w" in
			etcd/put-if | etcd/txn | etcd/watch) [ "$c" = "${conns%% *}" ] && echo "  $w: raftexample only, skipped for etcd"; continue ;;
			*/watch) continue ;;
			esac
			run_wrk "$system" "$prefix$w" "$w" "$c" "$target_url"
			if [ "$w/$c/$follower_c1" = put/1/1 ]; then
				run_wrk "$system" "${prefix}put" "put-$other" 1 "$other_url"
			fi
		done
	done
	if [ "$system" = raftexample ] && [[ " $workloads " == *" watch "* ]]; then run_watch "${urls[@]}"; fi
	if [ $keep = 1 ]; then cp "$data/$system"/*.log "$out/" 2>/dev/null || true; fi
	stop_members
	rm -rf "${data:?}/$system"
}

# --- the machine's floors, on the members' disk, before any member runs.
probe() { # benchtool subcommand and flags: its line into probes.txt
	bench/bin/benchtool "$@" | tee -a "$out/probes.txt" | sed 's/^/  /' || echo "benchtool $* failed" >&2
}
probes() {
	mkdir -p "$data"
	: >"$out/probes.txt"
	echo
	echo "== probes: fsync in $data, loopback round trips"
	probe fsync -dir "$data"
	probe rtt -proto tcp
	probe rtt -proto http
}

# --- the do-nothing server, under the serializable GET's requests.
bench_null() {
	local port=$((base_port + 34))
	port_free "$port" || { echo "port $port is in use; pick other ports with --base-port" >&2; exit 1; }
	echo
	echo "== null: benchtool null on 127.0.0.1:$port, answers $value_bytes B"
	bench/bin/benchtool null -addr "127.0.0.1:$port" -body-bytes "$value_bytes" &
	pids+=($!)
	wait_health "http://127.0.0.1:$port"
	local c
	for c in $conns; do run_wrk null get-serializable null "$c" "http://127.0.0.1:$port"; done
	stop_members
}

other=follower
[ "$target" = follower ] && other=leader
probes
if [ $null = 1 ] && [ $raftexample = 1 ] && [[ " $workloads " == *" get-serializable "* ]]; then bench_null; fi
[ $raftexample = 1 ] && bench_system raftexample
[ $etcd = 1 ] && bench_system etcd

# shellcheck source=bench/report.sh
. bench/report.sh
print_report
