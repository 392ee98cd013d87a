#!/usr/bin/env bash
# Side by side with etcd v3.5 (v2 API enabled): the same load generator
# against an on-disk Cairn member and an etcd member on the same disk, the
# rows alternating between the two so both see the same machine, ROUNDS
# passes, and the median of each row with the ratio Cairn/etcd. With
# MEMBERS=3 both run as three local processes.
#
#   make etcd                      # builds bin/etcd (v3.5) from the Go module proxy
#   make compare                   # or: ETCD=path/to/etcd MEMBERS=3 bash scripts/compare.sh
set -euo pipefail
BIN=${BIN:-bin/cairn}
ETCD=${ETCD:-bin/etcd}
BENCH_DIR=${BENCH_DIR:-.bench}
BENCHTIME=${BENCHTIME:-5s}
ROUNDS=${ROUNDS:-5}
MEMBERS=${MEMBERS:-1}
WATCH=${WATCH:-1} # 0 skips the long-poll watch row
# ROWS: comma-separated "workload clients" rows to run instead of all
WARMUP=${WARMUP:-10s} # uncounted writes to each server first (0s: none)
CLIENT=${CLIENT:-wire} # the load generator's HTTP client: wire or std (net/http)

[ -x "$BIN" ] || { echo "compare: $BIN not built (make build)" >&2; exit 1; }
[ -x "$ETCD" ] || { echo "compare: no etcd binary at $ETCD (make etcd, or ETCD=path)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
root="$BENCH_DIR/compare"
rm -rf "$root"
mkdir -p "$root"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# start KIND BASEPORT: MEMBERS members of KIND on loopback, client ports
# BASEPORT+2i, peer ports BASEPORT+2i+1; sets urls to their client URLs.
# (Not run in a subshell: pids must reach the cleanup.)
start() {
  local kind=$1 base=$2 cluster="" i
  urls=
  for ((i = 0; i < MEMBERS; i++)); do
    cluster+="${cluster:+,}m$i=http://127.0.0.1:$((base + 2 * i + 1))"
  done
  for ((i = 0; i < MEMBERS; i++)); do
    local c="http://127.0.0.1:$((base + 2 * i))" p="http://127.0.0.1:$((base + 2 * i + 1))"
    local dir="$root/$kind-$i"
    local common=(--name "m$i" --data-dir "$dir" --listen-client-urls "$c" --advertise-client-urls "$c"
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" --initial-cluster "$cluster"
      --initial-cluster-state new --initial-cluster-token "compare-$kind")
    if [ "$kind" = etcd ]; then
      "$ETCD" "${common[@]}" --enable-v2 --log-level warn >"$dir.log" 2>&1 &
    else
      "$BIN" serve "${common[@]}" --log-level warn >"$dir.log" 2>&1 &
    fi
    pids+=($!)
    urls+="${urls:+,}$c"
  done
}

healthy() {
  local url=${1%%,*} i
  for i in $(seq 1 200); do
    curl -fs "$url/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    sleep 0.1
  done
  echo "compare: $url not healthy" >&2
  return 1
}

start etcd 21379
etcd_urls=$urls
start cairn 22379
cairn_urls=$urls
healthy "$etcd_urls"
healthy "$cairn_urls"
# The load goes to the first member (the leader or not, as a client would).
etcd_ep=${etcd_urls%%,*}
cairn_ep=${cairn_urls%%,*}

rows=("put 1" "put 64" "get 64" "qget 64" "mixed 64")
[ "$MEMBERS" = 1 ] && rows=("put 1" "put 64" "put 256" "get 64" "qget 64" "mixed 64")
# ROWS="put 1,put 64" runs only those rows.
if [ -n "${ROWS:-}" ]; then IFS=, read -r -a rows <<<"$ROWS"; fi

declare -A ops cpu
# measure kind ep workload clients → "ops/s server-CPU-µs-per-op" (the CPU of
# the member under load, from its process_cpu_seconds_total; "-" if none)
measure() {
  "$BIN" bench --endpoints "$2" --workload "$3" --clients "$4" --duration "$BENCHTIME" --http-client "$CLIENT" |
    sed -n 's/.* \([0-9][0-9]*\) ops\/s.*/\1 &/p' | awk '{c="-"; if (match($0, /server-cpu\/op=[0-9.]+/)) c=substr($0, RSTART+14, RLENGTH-14); print $1, c}'
}
# Warm-up, not counted: a fresh Pebble appends to a new WAL file, and an
# fsync after an append also commits the file's new size, until its first
# WAL files are recycled (overwritten in place); etcd preallocates its WAL
# up front. Measured on 2026-11-25, one member, PUT at 1 client: 1,573–1,788
# ops/s in the first 12 s, 1,881–1,978 after 5 s at 64 clients.
if [ "$WARMUP" != 0s ]; then
  for ep in "$etcd_ep" "$cairn_ep"; do
    "$BIN" bench --endpoints "$ep" --workload put --clients 64 --duration "$WARMUP" >/dev/null
  done
fi
echo "$MEMBERS member(s) each, on-disk, $BENCHTIME per row, $ROUNDS rounds, rows alternating etcd / Cairn, after a $WARMUP warm-up of each, $CLIENT client"
for ((r = 1; r <= ROUNDS; r++)); do
  for row in "${rows[@]}"; do
    set -- $row
    for kind in etcd cairn; do
      ep=$etcd_ep
      [ "$kind" = cairn ] && ep=$cairn_ep
      read -r o c <<<"$(measure "$kind" "$ep" "$1" "$2")"
      ops["$kind $row"]+="$o "
      cpu["$kind $row"]+="$c "
    done
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-14s %12s %12s %8s %14s %14s %8s\n' workload "etcd ops/s" "Cairn ops/s" ratio "etcd cpu/op" "Cairn cpu/op" "ratio"
for row in "${rows[@]}"; do
  e=$(echo "${ops["etcd $row"]}" | median)
  c=$(echo "${ops["cairn $row"]}" | median)
  ec=$(echo "${cpu["etcd $row"]}" | tr ' ' '\n' | grep -v -- '-' | median)
  cc=$(echo "${cpu["cairn $row"]}" | tr ' ' '\n' | grep -v -- '-' | median)
  printf '%-14s %12s %12s %7.2fx %12sµs %12sµs %7.2fx   (etcd: %s| Cairn: %s)\n' "$row" "$e" "$c" \
    "$(awk -v c="$c" -v e="$e" 'BEGIN { print (e > 0 ? c / e : 0) }')" "${ec:--}" "${cc:--}" \
    "$(awk -v c="${cc:-0}" -v e="${ec:-0}" 'BEGIN { print (e > 0 ? c / e : 0) }')" "${ops["etcd $row"]}" "${ops["cairn $row"]}"
done
echo "cpu/op: server CPU per operation of the member under load (process_cpu_seconds_total around each pass, median)"

if [ "$WATCH" = 1 ] && [ "$MEMBERS" = 1 ]; then
  echo "1,000 long-poll watchers, 10 writes/s (ack→all and ack→each delivery latency):"
  for ((r = 1; r <= ROUNDS; r++)); do
    printf 'etcd  '; "$BIN" bench --endpoints "$etcd_ep" --workload longpoll --watchers 1000 --rate 10 | tail -1 | grep -o 'ack→all.*ack→each p50=[^ ]* p99=[^ ]*'
    printf 'Cairn '; "$BIN" bench --endpoints "$cairn_ep" --workload longpoll --watchers 1000 --rate 10 | tail -1 | grep -o 'ack→all.*ack→each p50=[^ ]* p99=[^ ]*'
  done
fi
