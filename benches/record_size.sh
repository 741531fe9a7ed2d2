#!/usr/bin/env bash
# The audit record's size for BENCHMARKS.md: starts a release kmsd on a fresh data directory, makes CALLS anonymous
# CreateKey calls carrying a 3.9 MB description (the hostile-client review's flood) and a few seconds of audited
# GenerateDataKey, stops it, and prints the stored bytes per record (every column) by kind, and the database's size.
# Needs grpcurl (../shared/tools/install-clients.sh grpcurl). Usage: benches/record_size.sh [CALLS] [TARGET_DIR]
# (TARGET_DIR holds release/kmsd and release/kmsctl; default: build this checkout's).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-10}; target=${2:-}
if [ -z "$target" ]; then
  cargo build --release --quiet --bin kmsd --bin kmsctl
  target=target
fi
dir=$(mktemp -d); port=$((20000 + RANDOM % 20000))
KMSD_LOG=warn "$target/release/kmsd" serve --listen 127.0.0.1:$port --data-dir "$dir/data" >"$dir/kmsd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
sleep 1
python3 -c 'import json; print(json.dumps({"description": "d" * 3900000}))' >"$dir/big.json"
for _ in $(seq "$calls"); do
  grpcurl -plaintext -max-msg-sz 8000000 -d @ 127.0.0.1:$port kms.v1.KeyManagementService/CreateKey \
    <"$dir/big.json" >/dev/null 2>&1 || true
done
KMSD_ENDPOINT=http://127.0.0.1:$port KMSD_TOKEN_FILE="$dir/data/admin.token" \
  "$target/release/kmsctl" bench --op generate-data-key -n 16 --duration 2s --warmup 0s >/dev/null
kill $pid; wait $pid 2>/dev/null || true
python3 - "$dir/data/kmsd.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
cols = [r[1] for r in db.execute("PRAGMA table_info(audit_events)")]
size = " + ".join(f"coalesce(length(CAST({c} AS BLOB)), 0)" for c in cols)
print("| record | records | mean bytes stored | largest |")
print("|---|---|---|---|")
for name, principal in (("CreateKey", "anonymous"), ("GenerateDataKey", "admin")):
    n, mean, top = db.execute(f"SELECT count(*), avg({size}), max({size}) FROM audit_events "
                              "WHERE event_name = ? AND principal = ?", (name, principal)).fetchone()
    print(f"| {name} by {principal} | {n} | {mean or 0:,.0f} | {top or 0:,} |")
pages, page = db.execute("PRAGMA page_count").fetchone()[0], db.execute("PRAGMA page_size").fetchone()[0]
print(f"\ndatabase: {pages * page:,} bytes")
PY
