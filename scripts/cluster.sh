#!/usr/bin/env bash
# Builds raftexample and runs the Procfile's members in the foreground, the way
# goreman or foreman would, for machines that have only Go. Each member logs to
# logs/<name>.log and writes its pid to logs/<name>.pid. Ctrl-C stops them all (SIGTERM: each closes its WAL cleanly).
# Data stays in raftexample-<id>/ and raftexample-<id>-snap/; rerunning the
# script restarts the same cluster. Remove those directories to start afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

go build -o raftexample .
mkdir -p logs

pids=()
stop() {
	trap - INT TERM EXIT
	echo "stopping the cluster"
	kill -TERM "${pids[@]}" 2>/dev/null || true
	wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

ports=()
while IFS= read -r line; do
	case "$line" in '' | '#'*) continue ;; esac
	name=${line%%:*}
	read -r -a cmd <<<"${line#*:}"
	"${cmd[@]}" >"logs/$name.log" 2>&1 &
	pids+=($!)
	echo $! >"logs/$name.pid"
	# The HTTP port is the value after --port.
	for ((i = 0; i < ${#cmd[@]} - 1; i++)); do
		[ "${cmd[i]}" = --port ] && ports+=("${cmd[i + 1]}")
	done
	echo "started $name (pid $!), logging to logs/$name.log"
done <Procfile

# Wait until every member answers /health with 200: it knows a leader.
for port in "${ports[@]}"; do
	for _ in $(seq 1 200); do
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)
		[ "$code" = 200 ] && break
		sleep 0.1
	done
done
echo "cluster is up: try  curl -L http://127.0.0.1:${ports[0]}/my-key -XPUT -d hello"
echo "press Ctrl-C to stop"
wait
