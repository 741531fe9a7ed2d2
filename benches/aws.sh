#!/usr/bin/env bash
# The AWS endpoint's figures for BENCHMARKS.md, in one run on one machine: audited GenerateDataKey over the AWS
# endpoint (h2load --h1 replaying one request signed with an access key, as AWS accepts a signature for 15
# minutes; one connection per call in flight), the same call over gRPC and the gRPC health check (kmsctl bench), and
# moto's server answering the same signed request. ROUNDS rounds of about SECONDS seconds at each in-flight level;
# the ops alternate within a round so all see the same machine; medians are printed as a Markdown table.
# Usage: benches/aws.sh [ROUNDS] [SECONDS]   (LEVELS="1 64" to measure only some levels)
# Needs h2load (../shared/tools/install-clients.sh h2load) and a Python with botocore, boto3 and moto
# (PYTHON=.ci/venv/bin/python after .ci/run, or pip install -r tests/aws/requirements.txt).
# BIN=DIR takes kmsd and kmsctl from DIR instead of building this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; seconds=${2:-4}
python=${PYTHON:-python3}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin kmsd --bin kmsctl
fi
bin=${BIN:-target/release}
dir=$(mktemp -d)
grpc=$((20000 + RANDOM % 10000)); aws=$((30000 + RANDOM % 10000)); moto=$((40000 + RANDOM % 10000))
KMSD_LOG=warn "$bin/kmsd" serve --listen 127.0.0.1:$grpc --aws-listen 127.0.0.1:$aws --data-dir "$dir/data" \
  >"$dir/kmsd.log" 2>&1 &
pid=$!
"$python" -m moto.server -H 127.0.0.1 -p $moto >"$dir/moto.log" 2>&1 &
moto_pid=$!
trap 'kill $pid $moto_pid 2>/dev/null; wait $pid $moto_pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do [ -s "$dir/data/admin.token" ] && break; sleep 0.2; done
[ -s "$dir/data/admin.token" ] || { echo "kmsd did not start:" >&2; cat "$dir/kmsd.log" >&2; exit 1; }
"$python" -c "
import socket, sys, time
for _ in range(150):
    try:
        socket.create_connection(('127.0.0.1', $moto), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit('moto did not start: ' + open('$dir/moto.log').read())"
sleep 1
export KMSD_ENDPOINT=http://127.0.0.1:$grpc KMSD_TOKEN_FILE="$dir/data/admin.token"
"$bin/kmsctl" keys create --alias alias/bench >/dev/null
"$bin/kmsctl" --json access-keys create admin >"$dir/access-key.json"

# One signed GenerateDataKey request per target: h2load sends its headers and body as they are.
"$python" - "$dir" $aws $moto <<'PY'
import json, sys
import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
out, aws, moto = sys.argv[1], sys.argv[2], sys.argv[3]
ak = json.load(open(f"{out}/access-key.json"))
moto_key = boto3.client("kms", endpoint_url=f"http://127.0.0.1:{moto}", region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench").create_key()["KeyMetadata"]["KeyId"]
for name, port, key, creds in [("kmsd", aws, "alias/bench", (ak["access_key_id"], ak["secret_access_key"])),
                               ("moto", moto, moto_key, ("bench", "bench"))]:
    body = json.dumps({"KeyId": key, "KeySpec": "AES_256"}).encode()
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.GenerateDataKey"})
    SigV4Auth(Credentials(*creds), "kms", "us-east-1").add_auth(request)
    open(f"{out}/{name}.body", "wb").write(body)
    with open(f"{out}/{name}.headers", "w") as f:
        for h in ("Authorization", "X-Amz-Date", "X-Amz-Target", "Content-Type"):
            f.write(f"{h}: {request.headers[h]}\n")
PY

echo "machine: $(nproc) cores, $(uname -r); ${rounds} rounds of ${seconds}s after 1s warm-up" >&2
results="$dir/results.jsonl"
h2load_run() { # NAME PORT IN_FLIGHT REQUESTS -> h2load's report in $dir/h2load.out
  local args=()
  while IFS= read -r h; do args+=(-H "$h"); done <"$dir/$1.headers"
  # A count of requests, not a duration: stopped mid-request by -D, h2load at times waits forever on moto's server.
  timeout $((seconds + 120)) h2load --h1 -c "$3" -m 1 -n "$4" -d "$dir/$1.body" "${args[@]}" \
    "http://127.0.0.1:$2/" >"$dir/h2load.out" 2>&1 || true
}
h2load_rate() { # NAME PORT IN_FLIGHT -> one JSON line
  # A short run warms up and estimates the rate, so the measured run lasts about SECONDS.
  h2load_run "$1" "$2" "$3" $(( $3 * 20 > 300 ? $3 * 20 : 300 ))
  local estimate
  estimate=$("$python" -c "
import re
m = re.search(r'finished in [\d.]+m?s, ([\d.]+) req/s', open('$dir/h2load.out').read())
print(int(float(m.group(1)) * $seconds) if m else 1000)")
  h2load_run "$1" "$2" "$3" $(( estimate > $3 ? estimate : $3 ))
  "$python" -c "
import json, re, sys
text = open('$dir/h2load.out').read()
if 'finished in' not in text:
    sys.exit('h2load failed: ' + text[-2000:])
rate = float(re.search(r'finished in [\d.]+m?s, ([\d.]+) req/s', text).group(1))
done = re.search(r'requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded', text)
ok = int(re.search(r'status codes: (\d+) 2xx', text).group(1))
print(json.dumps({'op': '$1 AWS GenerateDataKey', 'n': $3, 'rate': rate, 'errors': int(done.group(1)) - ok}))"
}
grpc_rate() { # OP IN_FLIGHT
  local c=$(( $2 > 128 ? 2 : 1 ))
  "$bin/kmsctl" --json bench --op "$1" -c "$c" -n "$2" --duration "${seconds}s" --warmup 1s --server-pid "$pid" |
    "$python" -c "
import json, sys
d = json.load(sys.stdin)
print(json.dumps({'op': 'kmsd gRPC ' + d['op'], 'n': $2, 'rate': d['calls_per_s'], 'errors': sum(d['errors'].values())}))"
}
for n in ${LEVELS:-1 64 256}; do
  for r in $(seq "$rounds"); do
    { grpc_rate health "$n"; grpc_rate generate-data-key "$n"; h2load_rate kmsd $aws "$n"; h2load_rate moto $moto "$n"; } |
      "$python" -c "import json,sys; [print(json.dumps(dict(json.loads(l), round=$r))) for l in sys.stdin]" >>"$results"
  done
done
"$python" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ops = ["kmsd gRPC Health", "kmsd gRPC GenerateDataKey", "kmsd AWS GenerateDataKey", "moto AWS GenerateDataKey"]
print("| target | in flight | calls/s (median) | ratio to gRPC health | ratio to moto | errors |")
print("|---|---|---|---|---|---|")
for n in sorted({r["n"] for r in rows}):
    def per_round(op):
        return {r["round"]: r["rate"] for r in rows if r["op"] == op and r["n"] == n}
    health, moto = per_round(ops[0]), per_round(ops[3])
    for op in ops:
        rates = per_round(op)
        to_health = statistics.median(rates[k] / health[k] for k in rates)
        to_moto = statistics.median(rates[k] / moto[k] for k in rates)
        errors = sum(r["errors"] for r in rows if r["op"] == op and r["n"] == n)
        print(f"| {op} | {n} | {statistics.median(rates.values()):,.0f} | {to_health:.2f} | {to_moto:.1f} | {errors} |")
PY
