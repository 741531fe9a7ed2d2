#!/usr/bin/env bash
# Sign, Verify and GenerateMac figures for BENCHMARKS.md, per key spec, against the health check of the same server
# in the same round: starts a release kmsd on a fresh data directory, then runs kmsctl bench at 1 and 256 calls in
# flight, ROUNDS rounds each (the cells alternate within a round so all see the same machine), and prints medians as
# a Markdown table. Each Sign and Verify is of a 32-byte message, with the spec's first algorithm; every call is
# authenticated and audited (answered only after its record is fsynced).
# Usage: benches/kinds.sh [ROUNDS] [SECONDS]   (LEVELS="1" or SPECS="ECC_NIST_P256 RSA_2048" to measure fewer cells)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; seconds=${2:-3}
cargo build --release --quiet --bin kmsd --bin kmsctl
bin=target/release; kmsctl=target/release/kmsctl
dir=$(mktemp -d); port=$((20000 + RANDOM % 20000))
KMSD_LOG=warn "$bin/kmsd" serve --listen 127.0.0.1:$port --data-dir "$dir/data" >"$dir/kmsd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
sleep 1
export KMSD_ENDPOINT=http://127.0.0.1:$port
export KMSD_TOKEN_FILE="$dir/data/admin.token"
echo "machine: $(nproc) cores, $(uname -r); kmsd pid $pid; ${rounds} rounds of ${seconds}s after 1s warm-up" >&2
results="$dir/results.jsonl"
levels=${LEVELS:-1 256}
specs=${SPECS:-RSA_2048 RSA_3072 RSA_4096 ECC_NIST_P256 ECC_NIST_P384 ECC_NIST_P521 ECC_SECG_P256K1 ECC_NIST_EDWARDS25519 ML_DSA_44 ML_DSA_65 ML_DSA_87}
cells="health: generate-mac:HMAC_256"
for spec in $specs; do cells="$cells sign:$spec verify:$spec"; done
for n in $levels; do
  c=$(( n > 128 ? 2 : 1 ))
  for r in $(seq "$rounds"); do
    for cell in $cells; do
      op=${cell%%:*}; spec=${cell#*:}
      "$kmsctl" --json bench --op "$op" ${spec:+--spec "$spec"} -c "$c" -n "$n" --duration "${seconds}s" \
        --warmup 1s --server-pid "$pid" |
        python3 -c "import json,sys; d=json.load(sys.stdin); d['round']=$r; d['spec']='$spec'; print(json.dumps(d))" >>"$results"
    done
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| op | spec | in flight | calls/s | ratio to health | p50 ms | p99 ms | server CPU µs/call | errors |")
print("|---|---|---|---|---|---|---|---|---|")
cells = []
for r in rows:
    if (r["op"], r["spec"]) not in cells:
        cells.append((r["op"], r["spec"]))
for n in sorted({r["concurrency"] for r in rows}):
    for op, spec in cells:
        sel = [r for r in rows if r["op"] == op and r["spec"] == spec and r["concurrency"] == n]
        med = lambda f: statistics.median(f(r) for r in sel)
        ratio = statistics.median(r["calls_per_s"] / h["calls_per_s"] for r in sel
                                  for h in rows if h["op"] == "Health" and h["concurrency"] == n and h["round"] == r["round"])
        errors = sum(sum(r["errors"].values()) for r in sel)
        print(f"| {op} | {spec or '-'} | {n} | {med(lambda r: r['calls_per_s']):,.0f} | {ratio:.2f} "
              f"| {med(lambda r: r['latency_ms']['p50']):.3f} | {med(lambda r: r['latency_ms']['p99']):.3f} "
              f"| {med(lambda r: r['server_cpu_us_per_call'] or 0):.1f} | {errors} |")
PY
