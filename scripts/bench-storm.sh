#!/usr/bin/env bash
# Connection storms side by side: `tether bench --storm` against
# `tether serve`'s /echo, the fastwebsockets and tokio-tungstenite echo
# servers of benches/peers (plain ws://), and `tether serve` over TLS with
# full handshakes only (--no-tls-resumption) and with resumed sessions.
# Each storm opens -c connections as fast as --connect-concurrency allows,
# closes them and opens them all again; 10 probe connections echo every
# 10 ms throughout. Rounds are interleaved; medians are printed.
#
#   scripts/bench-storm.sh                       # 3 rounds of 5,000 connections
#   scripts/bench-storm.sh --rounds 5 --connections 10000
#
# Needs openssl (a throwaway certificate for localhost). Every server
# listens on 127.0.0.1 and is stopped by PID.
set -euo pipefail
ROUNDS=3
CONNS=5000
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift ;;
        --connections) CONNS="$2"; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench-storm"
mkdir -p "$OUT"
rm -f "$OUT"/*.json
ulimit -n "$(ulimit -Hn)"

echo "== building (release)"
cargo build --release -q -p tether-ws-cli
cargo build --release -q --manifest-path benches/peers/Cargo.toml
TETHER="$ROOT/target/release/tether"
PEERS="$ROOT/benches/peers/target/release"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost" \
    -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A PORT=() PID=()
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

limits=(--max-connections 200000 --max-connections-per-ip 200000 --log warn)
start() {
    local s=$1 port; port=$(free_port)
    case "$s" in
        tether) "$TETHER" serve --listen "127.0.0.1:$port" "${limits[@]}" >"$OUT/$s.log" 2>&1 & ;;
        tether-tls) "$TETHER" serve --listen "127.0.0.1:$port" --tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem" "${limits[@]}" >"$OUT/$s.log" 2>&1 & ;;
        fastwebsockets) "$PEERS/fastwebsockets-echo" --listen "127.0.0.1:$port" >"$OUT/$s.log" 2>&1 & ;;
        tungstenite) "$PEERS/tungstenite-echo" --listen "127.0.0.1:$port" >"$OUT/$s.log" 2>&1 & ;;
    esac
    PID[$s]=$!; PORT[$s]=$port; PIDS+=($!)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server $s did not start" >&2; cat "$OUT/$s.log" >&2; exit 1
}
for s in tether fastwebsockets tungstenite tether-tls; do start "$s"; done

CASES=(tether fastwebsockets tungstenite tls-full tls-resumed)
run_case() {
    local c=$1 r=$2 url extra=()
    case "$c" in
        tether) url="ws://127.0.0.1:${PORT[tether]}/echo"; extra=(--server-pid "${PID[tether]}") ;;
        fastwebsockets|tungstenite) url="ws://127.0.0.1:${PORT[$c]}/"; extra=(--server-pid "${PID[$c]}") ;;
        tls-full) url="wss://localhost:${PORT[tether-tls]}/echo"; extra=(--server-pid "${PID[tether-tls]}" --cacert "$OUT/cert.pem" --no-tls-resumption) ;;
        tls-resumed) url="wss://localhost:${PORT[tether-tls]}/echo"; extra=(--server-pid "${PID[tether-tls]}" --cacert "$OUT/cert.pem") ;;
    esac
    "$TETHER" bench "$url" --storm -c "$CONNS" --close-timeout 10s "${extra[@]}" --json --log warn \
        >"$OUT/$c-$r.json" 2>"$OUT/$c-$r.err" || { echo "storm $c failed:" >&2; cat "$OUT/$c-$r.err" >&2; }
}
for r in $(seq "$ROUNDS"); do
    for i in "${!CASES[@]}"; do
        c=${CASES[$(( (i + r) % ${#CASES[@]} ))]}
        echo "== round $r: $c"
        run_case "$c" "$r"
    done
done

python3 - "$OUT" "$ROUNDS" "${CASES[@]}" <<'PY'
import json, sys, statistics
out, rounds, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def runs(c):
    for r in range(1, rounds + 1):
        try:
            with open(f"{out}/{c}-{r}.json") as f:
                yield json.load(f)
        except (OSError, ValueError):
            pass
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None
def phase(s, name):
    return next(p for p in s["phases"] if p["name"] == name)
rows = {}
for c in cases:
    rs = list(runs(c))
    for name in ("connect", "reconnect"):
        ph = [phase(s, name) for s in rs]
        rows[(c, name)] = dict(
            hs=med([p["handshakes_per_sec"] for p in ph]),
            p99=med([(p["handshake_us"] or {}).get("p99") for p in ph]),
            cpu=med([p["server_cpu_us_per_handshake"] for p in ph]),
            failed=sum(p["failed"] for p in ph),
            resumed=med([p["tls_resumed"] for p in ph]),
            probe=med([(s["probe_echo_us"] or {}).get("p99") for s in rs]),
        )
def f(v, fmt):
    return "-" if v is None else fmt.format(v)
print()
print(f'{"server":16} {"phase":10} {"handshakes/s":>13} {"p99 (ms)":>9} {"server CPU/handshake":>21} {"failed":>7} {"resumed":>8} {"probe echo p99":>15}')
for (c, name), r in rows.items():
    print(f'{c:16} {name:10} {f(r["hs"], "{:,.0f}"):>13} {f(r["p99"] and r["p99"]/1000, "{:.1f}"):>9} {f(r["cpu"], "{:.0f} µs"):>21} {r["failed"]:>7} {f(r["resumed"], "{:.0f}"):>8} {f(r["probe"] and r["probe"]/1000, "{:.2f} ms"):>15}')
print()
for name in ("connect", "reconnect"):
    t, fw = rows.get(("tether", name), {}), rows.get(("fastwebsockets", name), {})
    if t.get("hs") and fw.get("hs"):
        print(f'{name}: tether serve / fastwebsockets handshakes/s {t["hs"] / fw["hs"]:.2f}x, server CPU per handshake {t["cpu"] / fw["cpu"]:.2f}x')
full, res = rows.get(("tls-full", "reconnect"), {}), rows.get(("tls-resumed", "reconnect"), {})
if full.get("cpu") and res.get("cpu"):
    print(f'TLS reconnect storm: resumed handshakes cost the server {full["cpu"] / res["cpu"]:.1f}x less CPU than full ones ({full["hs"]:,.0f} vs {res["hs"]:,.0f} handshakes/s)')
PY
