#!/usr/bin/env bash
# Compressed echo (permessage-deflate) against Node `ws` and Python
# `websockets`, both on zlib: `tether bench --compress` runs the same cases
# against `tether serve`'s /echo, a Node `ws` echo server and a Python
# `websockets` echo server (scripts/bench-deflate/), each with compression
# on; the rounds are interleaved and the medians printed with the ratio to
# Tether. Text payloads (the bench's repeating a-z pattern).
#
#   scripts/bench-deflate-peers.sh                 # 3 rounds x 4 s per case
#   scripts/bench-deflate-peers.sh --rounds 5 --duration 5s
#
# Needs node and python3; installs `ws` (scripts/interop/package.json) and
# `websockets` 15.0.1 in .cache/peers-venv like scripts/interop/run.sh.
set -euo pipefail
ROUNDS=3
DURATION=4s
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench-deflate-peers"
mkdir -p "$OUT"
rm -f "$OUT"/*.json
VENV="$ROOT/.cache/peers-venv"
if ! "$VENV/bin/python" -c 'import websockets' 2>/dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "websockets==15.0.1"
fi
[ -d scripts/interop/node_modules/ws ] || (cd scripts/interop && npm ci --no-audit --no-fund --silent)
cargo build --release -q -p tether-ws-cli --bin tether
TETHER="$ROOT/target/release/tether"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A PORT=() PID=()
SERVERS="tether node-ws python-websockets"
for s in $SERVERS; do PORT[$s]=$(free_port); done
start() {
    local s="$1" p="${PORT[$1]}"
    case "$s" in
        tether) "$TETHER" serve --listen "127.0.0.1:$p" --max-message-size 2M --log warn >"$OUT/$s.log" 2>&1 & ;;
        node-ws) NODE_PATH="$ROOT/scripts/interop/node_modules" node scripts/bench-deflate/node_echo.js "$p" >"$OUT/$s.log" 2>&1 & ;;
        python-websockets) "$VENV/bin/python" scripts/bench-deflate/py_echo.py "$p" >"$OUT/$s.log" 2>&1 & ;;
    esac
    PID[$s]=$!
    for _ in $(seq 100); do grep -q listening "$OUT/$s.log" 2>/dev/null && return 0; sleep 0.1; done
    echo "server $s did not start:" >&2; cat "$OUT/$s.log" >&2; exit 1
}
stop_all() { for s in "${!PID[@]}"; do kill "${PID[$s]}" 2>/dev/null || true; done; }
trap stop_all EXIT
for s in $SERVERS; do start "$s"; done

# name: bench arguments
CASES=(
    "1K-d1:-c 50 -s 1K -d 1"
    "1K-d16:-c 50 -s 1K -d 16"
    "16K:-c 4 -s 16K -d 4"
)
servers=($SERVERS)
for round in $(seq "$ROUNDS"); do
    for ci in "${!CASES[@]}"; do
        name="${CASES[$ci]%%:*}"; args="${CASES[$ci]#*:}"
        shift_by=$(( (round + ci) % ${#servers[@]} ))
        for s in "${servers[@]:$shift_by}" "${servers[@]:0:$shift_by}"; do
            path=/; [ "$s" = tether ] && path=/echo
            # shellcheck disable=SC2086
            "$TETHER" bench "ws://127.0.0.1:${PORT[$s]}$path" $args --text --compress \
                --duration "$DURATION" --server-pid "${PID[$s]}" --json --log error \
                >"$OUT/$name.$s.$round.json" 2>/dev/null || echo "  $name $s round $round failed" >&2
        done
    done
done
python3 - "$OUT" "$SERVERS" <<'PY'
import json, glob, os, statistics, sys
out, servers = sys.argv[1], sys.argv[2].split()
cases = sorted({os.path.basename(f).split('.')[0] for f in glob.glob(f"{out}/*.json")},
               key=lambda c: ["1K-d1", "1K-d16", "16K"].index(c))
print(f"{'case':<8} {'server':<18} {'msgs/s':>10} {'vs tether':>9} {'p99 µs':>9} {'srv CPU%':>8} {'srv µs/msg':>10} {'deflate':>7}")
for c in cases:
    base = None
    for s in servers:
        runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{c}.{s}.*.json"))]
        if not runs:
            continue
        rate = statistics.median(r["msgs_per_sec"] for r in runs)
        p99 = statistics.median(r["latency_us"]["p99"] for r in runs)
        cpu = statistics.median(((r.get("server") or {}).get("cpu") or {}).get("percent", 0) for r in runs)
        comp = min(r.get("compressed_connections", 0) for r in runs)
        base = base or rate
        per = cpu / 100 / rate * 1e6 if rate else 0
        print(f"{c:<8} {s:<18} {rate:>10.0f} {rate / base:>8.2f}x {p99:>9.0f} {cpu:>8.0f} {per:>10.1f} {comp:>7}")
PY
