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
  --base-port P       ports P+1 .. P+33 are used (default 28100; keep them below the
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
watchers=1000 watch_conns=16 watch_on=all profile=0
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
	local lead idx
	lead=$(bench/bin/benchtool leader -kind "$system" "${urls[@]}")
	idx=$lead
	[ "$target" = follower ] && idx=$((lead % 3 + 1))
	target_url=${urls[idx - 1]}
	echo "$system: member $lead leads; all requests go to member $idx ($target, $target_url)" | tee -a "$out/machine.txt"
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
		done
	done
	if [ "$system" = raftexample ] && [[ " $workloads " == *" watch "* ]]; then run_watch "${urls[@]}"; fi
	if [ $keep = 1 ]; then cp "$data/$system"/*.log "$out/" 2>/dev/null || true; fi
	stop_members
	rm -rf "${data:?}/$system"
}

[ $raftexample = 1 ] && bench_system raftexample
[ $etcd = 1 ] && bench_system etcd

# --- the table
echo
echo "results (duration $duration per row, $keys keys of $value_bytes B; raw output in ${out#"$root"/}/)"
echo "p50/p99 are wrk's, which corrects for coordinated omission: one stall of S ms at a request interval of"
echo "I ms adds about S/I samples, so a few stalls show in p99; max is the slowest response measured."
table() { # system
	local system=$1
	echo
	echo "$system"
	printf '| %-16s | %5s | %8s | %8s | %8s | %8s | %7s | %6s |\n' workload conns 'req/s' 'p50 ms' 'p99 ms' 'max ms' non-2xx errors
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------------------ ------: ---------: ---------: ---------: ---------: --------: -------:
	local w
	for w in $(tr ' ' '\n' <<<"$workloads" | awk 'NF && !seen[$0]++'); do
		awk -F'\t' -v s="$system" -v w="$w" '$1 == s && $2 == w { printf "| %-16s | %5s | %8s | %8s | %8s | %8s | %7s | %6s |\n", $2, $3, $4, $5, $6, $7, $8, $9 }' "$out/results.tsv"
	done
}
touch "$out/results.tsv"
grep -q '^raftexample' "$out/results.tsv" && table raftexample
grep -q '^etcd' "$out/results.tsv" && table etcd
if grep -q '^raftexample' "$out/results.tsv" && grep -q '^etcd' "$out/results.tsv"; then
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
				# No etcd transaction runs in this harness: say so rather than drop the row.
				if (x[2] == "txn") { printf "| %-16s | %5s | %8s | %8s | %8s |\n", x[2], x[3], "n/a", "n/a", "n/a"; continue }
				if (!((x[2] "/" x[3]) in e)) continue
				split(e[x[2] "/" x[3]], y, "\t")
				printf "| %-16s | %5s | %8s | %8s | %8s |\n", x[2], x[3], ratio(x[4], y[4]), ratio(x[5], y[5]), ratio(x[6], y[6])
			}
		}' "$out/results.tsv"
fi
if [ -s "$out/put-if.tsv" ]; then
	echo
	echo "conditional PUT (If-Match: \"<modRevision>\") beside plain PUT, same run; 412: the member's count of its 412 answers"
	printf '| %5s | %9s | %9s | %6s | %8s | %8s | %6s | %7s |\n' conns 'put req/s' 'if req/s' ratio 'put p99' 'if p99' 412 '412 %'
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------: ----------: ----------: -------: ---------: ---------: -------: --------:
	# Each put-if row beside the put row at its connections that ran last
	# before it (the two run back to back; with "put put-if put put-if" each
	# pair is a row).
	awk -F'\t' '
		FILENAME ~ /put-if.tsv$/ { f[++m] = $3; all[m] = $4; next }
		$1 == "raftexample" && $2 == "put" { p[$3] = $4; p99[$3] = $6 }
		$1 == "raftexample" && $2 == "put-if" {
			c = $3; k++
			r = (p[c] + 0 > 0 && $4 + 0 > 0) ? sprintf("%.2fx", $4 / p[c]) : "-"
			printf "| %5s | %9s | %9s | %6s | %8s | %8s | %6s | %6.2f%% |\n", c, (c in p) ? p[c] : "-", $4, r,
				(c in p99) ? p99[c] : "-", $6, f[k], (all[k] > 0 ? 100 * f[k] / all[k] : 0)
		}' "$out/put-if.tsv" "$out/results.tsv"
fi
if [ -s "$out/txn.tsv" ]; then
	echo
	echo "transactions (POST /v1/txn: if bench-<a> exists put bench-<a> and bench-<b>, $value_bytes B each) beside plain PUT, same run;"
	echo "writes ratio: keys written per second, 2 x txn req/s over put req/s; wrote: transactions that wrote (the member's"
	echo "revision moved by one each) over its answers to them, all codes"
	printf '| %5s | %9s | %9s | %6s | %12s | %8s | %8s | %8s | %8s | %8s |\n' conns 'put req/s' 'txn req/s' ratio 'writes ratio' 'put p50' 'txn p50' 'put p99' 'txn p99' 'wrote'
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------: ----------: ----------: -------: -------------: ---------: ---------: ---------: ---------: ---------:
	# Each txn row beside the put row at its connections that ran last
	# before it, as for put-if.
	awk -F'\t' '
		FILENAME ~ /txn.tsv$/ { ok[++m] = $4; moved[m] = $5; next }
		$1 == "raftexample" && $2 == "put" { p[$3] = $4; p50[$3] = $5; p99[$3] = $6 }
		$1 == "raftexample" && $2 == "txn" {
			c = $3; k++
			r = (p[c] + 0 > 0 && $4 + 0 > 0) ? sprintf("%.2fx", $4 / p[c]) : "-"
			wr = (p[c] + 0 > 0 && $4 + 0 > 0) ? sprintf("%.2fx", 2 * $4 / p[c]) : "-"
			printf "| %5s | %9s | %9s | %6s | %12s | %8s | %8s | %8s | %8s | %8s |\n", c, (c in p) ? p[c] : "-", $4, r, wr,
				(c in p50) ? p50[c] : "-", $5, (c in p99) ? p99[c] : "-", $6, (ok[k] > 0 && moved[k] != "-" ? sprintf("%.2f%%", 100 * moved[k] / ok[k]) : "-")
		}' "$out/txn.tsv" "$out/results.tsv"
	if [ $etcd = 1 ]; then echo "etcd: n/a (no transaction workload for etcd in this harness)"; fi
fi
if [ -s "$out/watch.tsv" ]; then
	echo
	echo "watch: watchers on one prefix over the members ($watch_on); PUTs ($value_bytes B) at $watch_conns connections to the leader, $duration per phase;"
	echo "each run: PUTs without watchers, with them, without again"
	echo "(ntf: notification latency, delivery - acknowledgement of the write; early: deliveries before the acknowledgement, counted as 0;"
	echo " events/s: delivered while the PUTs ran; expected: live watchers x PUT/s; missed: acknowledged writes a watcher never got;"
	echo " cpu busy: the whole machine's, all its CPUs, over the phase, whoever used them)"
	printf '| %-9s | %8s | %7s | %7s | %7s | %9s | %9s | %7s | %5s | %7s | %7s | %7s | %7s | %6s | %8s |\n' phase watchers 'PUT/s' 'PUT p50' 'PUT p99' 'events/s' 'expected' missed cut 'ntf p50' 'ntf p99' 'ntf max' 'early' ratio 'cpu busy'
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----------- ---------: --------: --------: --------: ----------: ----------: --------: ------: --------: --------: --------: --------: -------: ---------:
	# ratio: PUT/s with watchers / the mean of the two runs without, around it.
	awk '{
		delete v
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		n++; line[n] = $0; set[n] = v["set"]; rate[v["set"] "/" v["phase"]] = v["put_per_s"]
	}
	END {
		for (j = 1; j <= n; j++) {
			delete v
			k = split(line[j], f, " ")
			for (i = 1; i <= k; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
			if (v["phase"] != "with") {
				printf "| %-9s | %8d | %7d | %7.2f | %7.2f | %9s | %9s | %7s | %5s | %7s | %7s | %7s | %7s | %6s | %7s%% |\n", v["phase"], 0, v["put_per_s"], v["put_p50_us"] / 1000, v["put_p99_us"] / 1000, "-", "-", "-", "-", "-", "-", "-", "-", "-", v["machine_busy_pct"]
				continue
			}
			b = (rate[v["set"] "/without-1"] + rate[v["set"] "/without-2"]) / 2
			printf "| %-9s | %8d | %7d | %7.2f | %7.2f | %9d | %9d | %7d | %5d | %7.2f | %7.2f | %7.1f | %6.1f%% | %6s | %7s%% |\n", v["phase"], v["watchers"] - v["refused"], v["put_per_s"], v["put_p50_us"] / 1000, v["put_p99_us"] / 1000,
				v["events_per_s"], v["expected_per_s"], v["missed"], v["cut"], v["lat_p50_us"] / 1000, v["lat_p99_us"] / 1000, v["lat_max_us"] / 1000,
				(v["events"] > 0 ? 100 * v["early"] / v["events"] : 0), (b > 0 ? sprintf("%.3f", v["put_per_s"] / b) : "-"), v["machine_busy_pct"]
		}
	}' "$out/watch.tsv"
	echo "ratio target (1,000 watchers): at least 0.90"
fi
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); took $(($(date +%s) - started)) s"
