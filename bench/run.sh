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
# picks a follower), the same for both systems.
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
  --workloads "LIST"  among put get get-serializable (default all three)
  --keys N            key space (default 100000), loaded before the runs
  --value-bytes N     value size (default 256)
  --target T          leader or follower: the one member all requests go to (default leader)
  --base-port P       ports P+1 .. P+33 are used (default 28100; keep them below the
                      ephemeral range, net.ipv4.ip_local_port_range, or an outgoing
                      connection may hold one when a member binds it)
  --keep              copy the members' logs into bench/results/<time>/
EOF
}

etcd=0 raftexample=1 duration=10s conns="1 16 256" workloads="put get get-serializable"
keys=100000 value_bytes=256 target=leader base_port=28100 keep=0
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
	--keep) keep=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "unknown flag $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
case "$target" in leader | follower) ;; *) echo "--target must be leader or follower" >&2; exit 2 ;; esac
read -r ephemeral_low ephemeral_high </proc/sys/net/ipv4/ip_local_port_range
if [ $((base_port + 33)) -ge "$ephemeral_low" ] && [ "$base_port" -le "$ephemeral_high" ]; then
	echo "warning: ports $((base_port + 1))-$((base_port + 33)) overlap the ephemeral range $ephemeral_low-$ephemeral_high" >&2
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
run_wrk() { # system script workload conns url
	local system=$1 script=$2 workload=$3 c=$4 url=$5 t figures
	t=$((c < 2 ? c : 2))
	local log=$out/$system-$workload-c$c.txt
	in_bg wrk -t"$t" -c"$c" -d"$duration" --timeout 10s -s "bench/$script.lua" "$url" -- "$keys" "$value_bytes" >"$log" 2>&1 || true
	if ! figures=$(wrk_figures "$log"); then
		echo "wrk failed for $system $workload c$c, see $log" >&2
		figures="- - - - - -"
	fi
	printf '%s\t%s\t%s\t%s\n' "$system" "$workload" "$c" "${figures// /$'\t'}" >>"$out/results.tsv"
	tail -1 "$out/results.tsv" | awk -F'\t' '{ printf "  %-16s c=%-4s %8s req/s  p50 %7s ms  p99 %7s ms  max %6s ms  non-2xx %s  errors %s\n", $2, $3, $4, $5, $6, $7, $8, $9 }'
}

# --- a cluster: start_cluster system → sets urls (client URLs) and target_url
start_raftexample() {
	local peers="http://127.0.0.1:$((base_port + 1)),http://127.0.0.1:$((base_port + 2)),http://127.0.0.1:$((base_port + 3))"
	urls=()
	mkdir -p "$data/raftexample"
	for id in 1 2 3; do
		local port=$((base_port + 10 + id))
		./raftexample --id "$id" --cluster "$peers" --port "$port" --data-dir "$data/raftexample" \
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
	"start_$system"
	wait_health "${urls[@]}"
	local lead idx
	lead=$(bench/bin/benchtool leader -kind "$system" "${urls[@]}")
	idx=$lead
	[ "$target" = follower ] && idx=$((lead % 3 + 1))
	target_url=${urls[idx - 1]}
	echo "$system: member $lead leads; all requests go to member $idx ($target, $target_url)" | tee -a "$out/machine.txt"
	bench/bin/benchtool load -kind "$system" -url "$target_url" -keys "$keys" -value-bytes "$value_bytes" | tee -a "$out/machine.txt"
	local w c
	for w in $workloads; do
		for c in $conns; do
			run_wrk "$system" "$prefix$w" "$w" "$c" "$target_url"
		done
	done
	if [ $keep = 1 ]; then cp "$data/$system"/*.log "$out/" 2>/dev/null || true; fi
	stop_members
	rm -rf "${data:?}/$system"
}

[ $raftexample = 1 ] && bench_system raftexample
[ $etcd = 1 ] && bench_system etcd

# --- the table
echo
echo "results (duration $duration per row, $keys keys of $value_bytes B; raw wrk output in ${out#"$root"/}/)"
echo "p50/p99 are wrk's, which corrects for coordinated omission: one stall of S ms at a request interval of"
echo "I ms adds about S/I samples, so a few stalls show in p99; max is the slowest response measured."
table() { # system
	local system=$1
	echo
	echo "$system"
	printf '| %-16s | %5s | %8s | %8s | %8s | %8s | %7s | %6s |\n' workload conns 'req/s' 'p50 ms' 'p99 ms' 'max ms' non-2xx errors
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------------------ ------: ---------: ---------: ---------: ---------: --------: -------:
	awk -F'\t' -v s="$system" '$1 == s { printf "| %-16s | %5s | %8s | %8s | %8s | %8s | %7s | %6s |\n", $2, $3, $4, $5, $6, $7, $8, $9 }' "$out/results.tsv"
}
[ $raftexample = 1 ] && table raftexample
[ $etcd = 1 ] && table etcd
if [ $raftexample = 1 ] && [ $etcd = 1 ]; then
	echo
	echo "raftexample / etcd (throughput: higher is better for raftexample; latency: lower is better)"
	printf '| %-16s | %5s | %8s | %8s | %8s |\n' workload conns 'req/s' 'p50' 'p99'
	printf '|%s|%s|%s|%s|%s|\n' ------------------ ------: ---------: ---------: ---------:
	awk -F'\t' '
		$1 == "etcd" { e[$2 "/" $3] = $0 }
		$1 == "raftexample" { r[++n] = $0 }
		function ratio(a, b) { return (a + 0 > 0 && b + 0 > 0) ? sprintf("%.2fx", a / b) : "-" }
		END {
			for (i = 1; i <= n; i++) {
				split(r[i], x, "\t")
				if (!((x[2] "/" x[3]) in e)) continue
				split(e[x[2] "/" x[3]], y, "\t")
				printf "| %-16s | %5s | %8s | %8s | %8s |\n", x[2], x[3], ratio(x[4], y[4]), ratio(x[5], y[5]), ratio(x[6], y[6])
			}
		}' "$out/results.tsv"
fi
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); took $(($(date +%s) - started)) s"
