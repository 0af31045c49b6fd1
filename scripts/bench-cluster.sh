#!/usr/bin/env bash
# Cross-node pub/sub against a single node, side by side in one run.
#
#   scripts/bench-cluster.sh                      # the defaults below
#   scripts/bench-cluster.sh --subscribers 2000 --storm 500 --duration 5
#
# Starts one redis-server and three `tether serve` nodes on it (engine
# "redis": A, B, C), plus one node with the in-memory engine (S, the
# single-node baseline), each on a free port on 127.0.0.1, release build,
# stopped by PID at the end. Then, with `tether bench`:
#
#   fan-out   --subscribers on one channel, the publisher as fast as it can:
#             single node (all on S) and cross-node (publisher on A,
#             subscribers split over B and C); deliveries/s.
#   publish   --publishers connections publishing as fast as they can to
#             one channel with one subscriber: publishes/s delivered, on S,
#             and through Redis (publishers on A, the subscriber on B).
#   latency   100 subscribers, 1,000 publications/s: publish -> delivery
#             p50/p99 on S, and from A to B and C.
#   storm     --storm subscribers each miss --backlog messages, then all
#             resubscribe with `since` at once: time until all recovered,
#             on S, and on B and C with the backlog published on A; the
#             Redis history reads it took (INFO commandstats).
#   idle      10,000 idle connections on a fresh node D on the same Redis:
#             resident memory per connection.
#
# Prints a table with the cross-node / single-node ratios. The JSON of every
# run is kept in target/bench-cluster/.
set -euo pipefail

SUBS=10000
STORM=2000
BACKLOG=20
DURATION=10
IDLE=10000
PUBLISHERS=16
while [ $# -gt 0 ]; do
    case "$1" in
        --subscribers) SUBS="$2"; shift ;;
        --storm) STORM="$2"; shift ;;
        --backlog) BACKLOG="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --idle) IDLE="$2"; shift ;;
        --publishers) PUBLISHERS="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench-cluster"
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/*.toml

REDIS=$(command -v redis-server || true)
[ -n "$REDIS" ] || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

echo "== building (release)"
cargo build --release -q -p tether-ws-cli
TETHER="$ROOT/target/release/tether"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

RPORT=$(free_port)
"$REDIS" --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$OUT" --logfile redis.log &
PIDS+=($!)
REDIS_PID=$!
for _ in $(seq 100); do
    redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

# node NAME ENGINE: start a node, set URL_NAME and PID_NAME.
node() {
    local name=$1 engine=$2 cluster=""
    if [ "$engine" = redis ]; then
        cluster=$(printf '[cluster]\nengine = "redis"\nredis_url = "redis://127.0.0.1:%s/0"\nnode = "%s"\n' "$RPORT" "$name")
    fi
    cat >"$OUT/$name.toml" <<EOF
[[listen]]
addr = "127.0.0.1:0"

[limits]
max_connections = 200000
max_connections_per_ip = 200000
send_queue = 4096

$cluster

[[route]]
path = "/pubsub"
kind = "pubsub"
client_publish = true
history_size = 100

[[route]]
path = "/echo"
kind = "echo"
EOF
    : >"$OUT/$name.log"
    "$TETHER" serve --config "$OUT/$name.toml" --log warn >"$OUT/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    local url=""
    for _ in $(seq 100); do
        url=$(sed -n 's/^listening on http:\/\/\(.*\)$/\1/p' "$OUT/$name.log" | head -1)
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$OUT/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$url" ] || { echo "node $name did not start" >&2; cat "$OUT/$name.log" >&2; exit 1; }
    printf -v "URL_$name" '%s' "$url"
    printf -v "PID_$name" '%s' "$pid"
}

node S memory
node A redis
node B redis
node C redis
node D redis
echo "== redis 127.0.0.1:$RPORT; single node S $URL_S; cluster A $URL_A, B $URL_B, C $URL_C"

bench() {
    local out=$1
    shift
    "$TETHER" bench "$@" --close-timeout 10s --json --log warn >"$OUT/$out.json" 2>"$OUT/$out.err" || {
        echo "bench $out failed:" >&2
        cat "$OUT/$out.err" >&2
        exit 1
    }
}

history_calls() {
    # Calls of the history script (EVALSHA) and plain EVALs so far.
    redis-cli -p "$RPORT" info commandstats |
        awk -F'[:=,]' '/^cmdstat_(evalsha|eval):/ { n += $3 } END { print n + 0 }'
}

redis_cpu() {
    # Redis's CPU seconds so far (user + system).
    redis-cli -p "$RPORT" info cpu |
        awk -F: '/^used_cpu_(sys|user):/ { n += $2 } END { printf "%.3f\n", n }'
}

echo "== fan-out: $SUBS subscribers, ${DURATION}s each"
bench fanout-single "ws://$URL_S/pubsub" --broadcast --channel fan -c "$SUBS" -t "${DURATION}s" \
    --server-pid "$PID_S"
cpu0=$(redis_cpu)
bench fanout-cross "ws://$URL_B/pubsub" --subscribe-url "ws://$URL_C/pubsub" \
    --publish-url "ws://$URL_A/pubsub" --broadcast --channel fan -c "$SUBS" -t "${DURATION}s"
echo "$cpu0 $(redis_cpu)" >"$OUT/fanout-cross-redis-cpu.txt"

echo "== publish: $PUBLISHERS publishers, 1 subscriber, ${DURATION}s each"
bench publish-single "ws://$URL_S/pubsub" --broadcast --channel pub --publishers "$PUBLISHERS" -c 1 -t "${DURATION}s" \
    --server-pid "$PID_S"
batches() {
    # Node A's publish script calls and the publishes they carried so far.
    curl -s "http://$URL_A/metrics" | awk '
        /^tether_engine_publish_batches_total/ { b += $2 }
        /^tether_engine_batched_publishes_total/ { p += $2 }
        END { print b + 0, p + 0 }'
}
cpu0=$(redis_cpu)
batches0=$(batches)
bench publish-cross "ws://$URL_B/pubsub" --publish-url "ws://$URL_A/pubsub" --broadcast --channel pub \
    --publishers "$PUBLISHERS" -c 1 -t "${DURATION}s" --server-pid "$PID_A"
sleep 1 # what A still had queued when the publishers closed
echo "$cpu0 $(redis_cpu) $batches0 $(batches)" >"$OUT/publish-cross-redis.txt"

echo "== latency: 100 subscribers, 1,000 publications/s"
bench latency-single "ws://$URL_S/pubsub" --broadcast --channel lat -c 100 --rate 1000 -t "${DURATION}s"
bench latency-cross "ws://$URL_B/pubsub" --subscribe-url "ws://$URL_C/pubsub" \
    --publish-url "ws://$URL_A/pubsub" --broadcast --channel lat -c 100 --rate 1000 -t "${DURATION}s"

echo "== recovery storm: $STORM subscribers, $BACKLOG missed each"
bench storm-single "ws://$URL_S/pubsub" --recovery-storm --channel storm -c "$STORM" --backlog "$BACKLOG"
before=$(history_calls)
bench storm-cross "ws://$URL_B/pubsub" --subscribe-url "ws://$URL_C/pubsub" \
    --publish-url "ws://$URL_A/pubsub" --recovery-storm --channel storm -c "$STORM" --backlog "$BACKLOG"
after=$(history_calls)
echo "$(( after - before ))" >"$OUT/storm-cross-scripts.txt"

echo "== idle: $IDLE connections on D"
bench idle-cross "ws://$URL_D/echo" --idle -c "$IDLE" --server-pid "$PID_D"

python3 - "$OUT" "$STORM" "$BACKLOG" <<'EOF'
import json, sys
out, storm, backlog = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(name):
    with open(f"{out}/{name}.json") as f:
        return json.load(f)
def lat(s, q):
    l = s.get("latency_us") or {}
    return l.get(q)
def cpu_of(s):
    c = (s.get("server") or {}).get("cpu") or {}
    return f'{c["percent"]:.0f}' if "percent" in c else "-"
rows = []
fs, fc = load("fanout-single"), load("fanout-cross")
rows.append(("fan-out deliveries/s", fs["msgs_per_sec"], fc["msgs_per_sec"],
             f'{fc["msgs_per_sec"] / max(fs["msgs_per_sec"], 1e-9):.2f}x'))
ls, lc = load("latency-single"), load("latency-cross")
for q in ("p50", "p99"):
    a, b = lat(ls, q), lat(lc, q)
    rows.append((f"latency {q} (us) at 1,000/s", a, b,
                 f"+{(b - a) / 1000:.2f} ms" if a is not None and b is not None else "-"))
rows.append(("publishes/s (one publisher)", fs["messages_sent"] / fs["duration_secs"],
             fc["messages_sent"] / fc["duration_secs"], "through Redis from A"))
ps, pc = load("publish-single"), load("publish-cross")
rows.append(("publishes/s delivered (many publishers)", ps["msgs_per_sec"], pc["msgs_per_sec"],
             f'{pc["msgs_per_sec"] / max(ps["msgs_per_sec"], 1e-9):.2f}x; CPU S {cpu_of(ps)}%, A {cpu_of(pc)}%'))
with open(f"{out}/publish-cross-redis.txt") as f:
    p0, p1, b0, n0, b1, n1 = map(float, f.read().split())
if n1 > n0:
    rows.append(("Redis CPU per publish, many publishers (us)", "-",
                 f'{(p1 - p0) * 1e6 / (n1 - n0):.1f}',
                 f'{n1 - n0:,.0f} publishes in {b1 - b0:,.0f} script calls'))
with open(f"{out}/fanout-cross-redis-cpu.txt") as f:
    c0, c1 = map(float, f.read().split())
if fc["messages_sent"]:
    rows.append(("Redis CPU per publish, fan-out (us)", "-", f'{(c1 - c0) * 1e6 / fc["messages_sent"]:.1f}',
                 f"{c1 - c0:.2f} s for {fc['messages_sent']:,} publishes"))
ss, sc = load("storm-single"), load("storm-cross")
rows.append((f"storm of {storm}: all recovered (s)", ss["duration_secs"], sc["duration_secs"],
             f'{sc["duration_secs"] / max(ss["duration_secs"], 1e-9):.2f}x'))
rows.append(("storm: recovery errors", ss["errors"], sc["errors"], ""))
with open(f"{out}/storm-cross-scripts.txt") as f:
    scripts = int(f.read())
rows.append(("storm: Redis script calls", "-", scripts,
             f"{storm} clients, 1 channel, incl. {backlog + 1} publishes"))
idle = load("idle-cross")
per = (idle.get("server") or {}).get("rss_per_connection_bytes")
rows.append(("idle RSS per connection (D)", "-", f"{per:.0f} B" if per else "-", ""))
print()
print(f'{"":38} {"single node":>14} {"cross-node":>14}  ratio')
for name, a, b, r in rows:
    fmt = lambda v: f"{v:,.0f}" if isinstance(v, (int, float)) and v >= 100 else (f"{v:.3f}" if isinstance(v, float) else str(v))
    print(f"{name:38} {fmt(a):>14} {fmt(b):>14}  {r}")
for name in ("publish-single", "publish-cross", "fanout-single", "fanout-cross", "latency-single", "latency-cross", "storm-single", "storm-cross"):
    s = load(name)
    if s["errors"]:
        print(f"{name}: {s['errors']} errors: {s['error_samples']}")
EOF
