#!/usr/bin/env bash
# kmsd on PostgreSQL, for BENCHMARKS.md: audited GenerateDataKey and the health check, at 1 and 256 calls in
# flight, against three set-ups measured alternately in one run on this machine: SQLite single node; one replica
# on PostgreSQL; three replicas on one PostgreSQL (connections spread over them by kmsctl bench). The health rate
# of the same processes is the yardstick. PostgreSQL runs from Debian's server package on a Unix socket, with
# fsync on (commit latency is part of what is measured) and asynchronous replication (none).
# At the end it prints each audit writer's own figures (batch size, time per batch, how busy) from its last
# GenerateDataKey run at 256 in flight.
# Usage: benches/replicas.sh [ROUNDS] [SECONDS]   (BIN=DIR: kmsd and kmsctl from DIR instead of building)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; seconds=${2:-4}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin kmsd --bin kmsctl
fi
bin=${BIN:-target/release}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d); chmod 755 "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg pg_ctl -D "$dir/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pgbin/$1" "${@:2}"; else "$pgbin/$1" "${@:2}"; fi
}
trap cleanup EXIT
mkdir "$dir/sock"
[ "$(id -u)" = 0 ] && chown postgres "$dir" "$dir/sock"
pg initdb -D "$dir/pg" -U kmsd --auth=trust -E UTF8 >/dev/null
pg pg_ctl -D "$dir/pg" -o "-c listen_addresses='' -k $dir/sock -c max_connections=200" -l "$dir/pg.log" -w start \
  >/dev/null
pg createdb -h "$dir/sock" -U kmsd one
pg createdb -h "$dir/sock" -U kmsd three

# start NAME PORT [ARGS...]: a release kmsd on its own data directory; waits until it serves.
start() {
  local name=$1 port=$2; shift 2
  mkdir -p "$dir/$name"
  KMSD_LOG="warn,kmsd::audit::writer=debug" "$bin/kmsd" serve --listen "127.0.0.1:$port" --data-dir "$dir/$name" \
    --log-format json "$@" >"$dir/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    "$bin/kmsctl" --endpoint "http://127.0.0.1:$port" health >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "kmsd $name did not start:" >&2; cat "$dir/$name.log" >&2; exit 1
}
base=$((20000 + RANDOM % 20000))
start sqlite "$base"
start one $((base + 1)) --database-url "host=$dir/sock user=kmsd dbname=one"
start a $((base + 2)) --database-url "host=$dir/sock user=kmsd dbname=three"
for r in b c; do
  mkdir -p "$dir/$r"; cp "$dir/a/root.key" "$dir/a/admin.token" "$dir/$r/"
done
start b $((base + 3)) --database-url "host=$dir/sock user=kmsd dbname=three"
start c $((base + 4)) --database-url "host=$dir/sock user=kmsd dbname=three"

declare -A endpoints=(
  [sqlite]="http://127.0.0.1:$base"
  [pg-1]="http://127.0.0.1:$((base + 1))"
  [pg-3]="http://127.0.0.1:$((base + 2)),http://127.0.0.1:$((base + 3)),http://127.0.0.1:$((base + 4))"
)
declare -A tokens=([sqlite]="$dir/sqlite/admin.token" [pg-1]="$dir/one/admin.token" [pg-3]="$dir/a/admin.token")
echo "machine: $(nproc) cores, $(uname -r); PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'); \
${rounds} rounds of ${seconds}s after 1s warm-up" >&2
results="$dir/results.jsonl"
for r in $(seq "$rounds"); do
  for n in 1 256; do
    for setup in sqlite pg-1 pg-3; do
      # Two connections per replica at 256 in flight, one at 1.
      if [ "$setup" = pg-3 ]; then c=$(( n > 1 ? 6 : 1 )); else c=$(( n > 1 ? 2 : 1 )); fi
      for op in health generate-data-key; do
        KMSD_TOKEN_FILE="${tokens[$setup]}" "$bin/kmsctl" --endpoint "${endpoints[$setup]}" --json bench --op "$op" \
          -c "$c" -n "$n" --duration "${seconds}s" --warmup 1s |
          python3 -c "import json,sys; d=json.load(sys.stdin); d['round']=$r; d['setup']='$setup'; print(json.dumps(d))" \
          >>"$results"
      done
    done
  done
done
python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def sel(setup, op, n):
    return [r for r in rows if r["setup"] == setup and r["op"] == op and r["concurrency"] == n]
print("| set-up | in flight | health calls/s | GenerateDataKey calls/s | ratio to health | GDK p50 ms | GDK p99 ms | errors |")
print("|---|---|---|---|---|---|---|---|")
for n in (1, 256):
    for setup in ("sqlite", "pg-1", "pg-3"):
        health, gdk = sel(setup, "Health", n), sel(setup, "GenerateDataKey", n)
        ratio = statistics.median(g["calls_per_s"] / h["calls_per_s"] for g in gdk for h in health
                                  if g["round"] == h["round"])
        med = lambda rs, f: statistics.median(f(r) for r in rs)
        errors = sum(sum(r["errors"].values()) for r in gdk + health)
        print(f"| {setup} | {n} | {med(health, lambda r: r['calls_per_s']):,.0f} | {med(gdk, lambda r: r['calls_per_s']):,.0f} "
              f"| {ratio:.3f} | {med(gdk, lambda r: r['latency_ms']['p50']):.3f} | {med(gdk, lambda r: r['latency_ms']['p99']):.3f} "
              f"| {errors} |")
PY
sleep 1.5   # the writers log their figures once a second
python3 - "$dir" <<'PY'
import json, sys
print()
print("| daemon | batches/s | mean batch | mean time per batch ms | writer busy % |")
print("|---|---|---|---|---|")
for name, label in (("sqlite", "SQLite"), ("one", "PostgreSQL, one replica"), ("a", "three replicas: a"),
                    ("b", "three replicas: b"), ("c", "three replicas: c")):
    lines = [json.loads(l) for l in open(f"{sys.argv[1]}/{name}.log") if '"audit writer"' in l]
    for l in lines[-2:]:
        f = l
        print(f"| {label} | {f['batches']} | {f['mean_batch']} | {f['mean_commit_us'] / 1000:.2f} | {f['writer_busy_pct']} |")
PY
