# shellcheck shell=bash disable=SC2154 # set by bench/run.sh, which sources this
# bench/report.sh: bench/run.sh's tables, printed from the files of one run in
# $out (results.tsv, probes.txt, put-if.tsv, txn.tsv, watch.tsv). The lines
# that judge the run against issue #16's targets come from benchtool report,
# where they are tested.

# table SYSTEM TITLE: the rows of one system in results.tsv.
table() {
	echo
	echo "$2"
	printf '| %-16s | %5s | %8s | %8s | %8s | %8s | %7s | %6s |\n' workload conns 'req/s' 'p50 ms' 'p99 ms' 'max ms' non-2xx errors
	printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------------------ ------: ---------: ---------: ---------: ---------: --------: -------:
	# Grouped by workload, in the order each first ran: put-follower after
	# put c1, which it ran beside.
	awk -F'\t' -v s="$1" '$1 == s {
		if (!($2 in rows)) order[++n] = $2
		rows[$2] = rows[$2] sprintf("| %-16s | %5s | %8s | %8s | %8s | %8s | %7s | %6s |\n", $2, $3, $4, $5, $6, $7, $8, $9)
	} END { for (i = 1; i <= n; i++) printf "%s", rows[order[i]] }' "$out/results.tsv"
}

print_report() {
	echo
	echo "results (duration $duration per row, $keys keys of $value_bytes B; raw output in ${out#"$root"/}/)"
	echo "p50/p99 are wrk's, which corrects for coordinated omission: one stall of S ms at a request interval of"
	echo "I ms adds about S/I samples, so a few stalls show in p99; max is the slowest response measured."
	touch "$out/results.tsv"
	bench/bin/benchtool report -dir "$out" -section header -target "$target"
	grep -q '^null' "$out/results.tsv" && table null "null: a do-nothing Go net/http server (benchtool null), the serializable GET's requests"
	grep -q '^raftexample' "$out/results.tsv" && table raftexample raftexample
	grep -q '^etcd' "$out/results.tsv" && table etcd etcd
	if grep -q '^raftexample' "$out/results.tsv" && grep -q '^etcd' "$out/results.tsv"; then
		echo
		bench/bin/benchtool report -dir "$out" -section etcd -target "$target"
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
		bench/bin/benchtool report -dir "$out" -section put-if
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
}
