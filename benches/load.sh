#!/usr/bin/env bash
# End-to-end load figures for BENCHMARKS.md: starts a release kmsd on a fresh data directory, then runs kmsctl bench
# for health, generate-data-key and decrypt at 1, 16, 64 and 256 calls in flight, ROUNDS rounds each (the ops
# alternate within a round so all three see the same machine), and prints medians as a Markdown table.
# Usage: benches/load.sh [ROUNDS] [SECONDS]   (LEVELS="256" to measure only some in-flight levels)
# To compare builds with the same load generator: BIN=DIR takes kmsd from DIR instead of building this checkout,
# KMSCTL=PATH takes kmsctl from PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; seconds=${2:-4}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin kmsd --bin kmsctl
fi
bin=${BIN:-target/release}; kmsctl=${KMSCTL:-target/release/kmsctl}
dir=$(mktemp -d); port=$((20000 + RANDOM % 20000))
KMSD_LOG=warn "$bin/kmsd" serve --listen 127.0.0.1:$port --data-dir "$dir/data" >"$dir/kmsd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
sleep 1
export KMSD_ENDPOINT=http://127.0.0.1:$port
# Every call authenticates, as a real client's would: the bootstrap administrator's token.
export KMSD_TOKEN_FILE="$dir/data/admin.token"
echo "machine: $(nproc) cores, $(uname -r); kmsd pid $pid; ${rounds} rounds of ${seconds}s after 1s warm-up" >&2
results="$dir/results.jsonl"
levels=${LEVELS:-1 16 64 256}
for n in $levels; do
  c=$(( n > 128 ? 2 : 1 ))
  for r in $(seq "$rounds"); do
    for op in health generate-data-key decrypt; do
      "$kmsctl" --json bench --op "$op" -c "$c" -n "$n" --duration "${seconds}s" --warmup 1s \
        --blobs 1000 --server-pid "$pid" | python3 -c "import json,sys; d=json.load(sys.stdin); d['round']=$r; print(json.dumps(d))" >>"$results"
    done
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(op, n, f):
    return statistics.median(f(r) for r in rows if r["op"] == op and r["concurrency"] == n)
print("| op | in flight | connections | calls/s | ratio to health | p50 ms | p99 ms | server CPU µs/call | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for n in sorted({r["concurrency"] for r in rows}):
    health = med("Health", n, lambda r: r["calls_per_s"])
    for op in ("Health", "GenerateDataKey", "Decrypt"):
        sel = [r for r in rows if r["op"] == op and r["concurrency"] == n]
        rate = med(op, n, lambda r: r["calls_per_s"])
        ratio = statistics.median(r["calls_per_s"] / h["calls_per_s"] for r in sel
                                  for h in rows if h["op"] == "Health" and h["concurrency"] == n and h["round"] == r["round"])
        errors = sum(sum(r["errors"].values()) for r in sel)
        print(f"| {op} | {n} | {sel[0]['connections']} | {rate:,.0f} | {ratio:.2f} | {med(op, n, lambda r: r['latency_ms']['p50']):.3f} "
              f"| {med(op, n, lambda r: r['latency_ms']['p99']):.3f} | {med(op, n, lambda r: r['server_cpu_us_per_call'] or 0):.1f} | {errors} |")
PY
