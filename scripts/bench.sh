#!/usr/bin/env bash
# Starts one on-disk member on loopback and runs the load generator against
# it: the rows of the performance table, each printed as ops/s and p50/p99,
# with the server's CPU seconds per operation where /proc tells them.
set -euo pipefail
BIN=${BIN:-bin/cairn}
BENCH_DIR=${BENCH_DIR:-.bench}
BENCHTIME=${BENCHTIME:-10s}
PORT=${PORT:-23790}
PEER=${PEER:-23800}

dir="$BENCH_DIR/member"
rm -rf "$dir"
mkdir -p "$dir"
"$BIN" serve --name bench --data-dir "$dir" \
  --listen-client-urls "http://127.0.0.1:$PORT" --advertise-client-urls "http://127.0.0.1:$PORT" \
  --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
  --log-level warn >"$BENCH_DIR/member.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

cpu() { awk '{print $14+$15}' "/proc/$pid/stat"; }
tck=$(getconf CLK_TCK)
run() {
  local before after
  before=$(cpu)
  out=$("$BIN" bench --endpoints "http://127.0.0.1:$PORT" --workload "$1" --clients "$2" --duration "$BENCHTIME")
  after=$(cpu)
  ops=$(echo "$out" | sed -n 's/.*ops=\([0-9]*\).*/\1/p')
  awk -v o="$out" -v b="$before" -v a="$after" -v t="$tck" -v n="$ops" \
    'BEGIN { printf "%s  server-cpu/op=%.1fus\n", o, (n>0 ? (a-b)/t/n*1e6 : 0) }'
}
echo "1 member, on-disk store in $dir, ${BENCHTIME} per row"
run put 1
run put 64
run put 256
run get 64
run qget 64
run mixed 64
# 10,000 Server-Sent Events watchers, a write every 100 ms: acknowledgement
# to delivery, events/s, and the member's memory and CPU per watcher.
"$BIN" bench --endpoints "http://127.0.0.1:$PORT" --workload sse-shared --watchers 10000 --rate 10 --duration "$BENCHTIME"
"$BIN" bench --endpoints "http://127.0.0.1:$PORT" --workload sse-distinct --watchers 10000 --rate 10 --duration "$BENCHTIME"
# 1,000 v2 long-poll watchers on one prefix (each re-watching from
# modifiedIndex+1 after every event), a write every 100 ms: acknowledgement
# to delivery to every watcher, missing deliveries (0), and the member's
# memory and CPU per watcher.
"$BIN" bench --endpoints "http://127.0.0.1:$PORT" --workload longpoll --watchers 1000 --rate 10 --duration "$BENCHTIME"
echo "data dir: $(du -sh "$dir" | cut -f1)  server RSS: $(awk '/VmRSS/ {print $2" "$3}' /proc/$pid/status)"
