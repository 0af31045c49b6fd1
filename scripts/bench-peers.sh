#!/usr/bin/env bash
# Compare `tether serve`'s /echo with other WebSocket servers and a raw TCP
# echo, using the same `tether bench` cases against each. The servers:
# `tether serve` (the application), tether-echo (the tether library with the
# same echo loop, no application around it), fastwebsockets and
# tokio-tungstenite echo servers (benches/peers/), a raw TCP echo, and the
# raw TCP echo with RFC 6455's masking added on both sides ("masking floor":
# the client masks every frame with a fresh key, the server XORs every byte
# it echoes; no WebSocket implementation can do less work than that).
#
#   scripts/bench-peers.sh            # full run: 3 rounds x 4 s per case (~10 min)
#   scripts/bench-peers.sh --quick    # 1 round x 2 s, 2,000 idle connections (~1 min)
#   scripts/bench-peers.sh --rounds 5 --duration 5s --idle 10000 --broadcast 10000
#   scripts/bench-peers.sh --only 'd16' --servers 'tcp tether-lib' --idle 0 --broadcast 0
#                                     # one case on two servers; skip idle and broadcast
#   scripts/bench-peers.sh --tls      # the same over TLS (wss://), see below
#
# Builds everything in release (Tether's workspace and the separate one in
# benches/peers/), starts each server on 127.0.0.1, runs the cases
# interleaved (every round visits every server once per case, in a rotating
# order, so a burst of background load hits them all alike), and prints a
# table of medians with the ratio to the raw TCP echo (same bytes, no
# WebSocket: `tether bench --raw-tcp`) and to the masking floor (`tether
# bench --raw-tcp --raw-mask` against `tcp-echo --unmask`). Idle memory: N idle connections are
# opened to a freshly started server and its VmRSS growth is divided by N.
# Broadcast (tether only: the peers have no rooms): BCAST subscribers on
# `tether serve`'s /chat/{room}, one publisher at a rate that offers 2.5M
# deliveries/s; delivered msgs/s and fan-out latency are reported.
#
# Client and servers share the machine's cores: the table reports the CPU
# use of both (percent of one core), so a saturated load generator shows,
# and their CPU time per message, alone and together.
# Raw results (one JSON summary per run) are kept in target/bench-peers/.
#
# --tls: every server speaks TLS (a self-signed certificate for 127.0.0.1
# made with openssl into target/bench-peers/; `tether serve --tls-cert`,
# the peers' `--tls CERT KEY`, all on rustls with the `ring` provider) and
# the cases run over wss://. The baseline is a raw TLS echo (`tcp-echo
# --tls`, driven by `tether bench --raw-tcp tls://...`: the same bytes over
# TLS, no WebSocket); server `tls-mask` adds the masking floor over TLS.
# Idle memory is per TLS connection; there is no broadcast run.
set -euo pipefail

ROUNDS=3
DURATION=4s
ONLY=""
SERVERS=""
IDLE=10000
BCAST=10000
TLS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --tls) TLS=1 ;;
        --quick) ROUNDS=1; DURATION=2s; IDLE=2000; BCAST=1000 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --duration) DURATION="$2"; shift ;;
        --idle) IDLE="$2"; shift ;;
        --broadcast) BCAST="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        --servers) SERVERS="$2"; shift ;;
        -h|--help) sed -n '2,41p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$TLS" = 1 ]; then
    BASE=tls; FLOOR=tls-mask; BCAST=0
    : "${SERVERS:=tls tether tether-lib fastwebsockets tungstenite}"
else
    BASE=tcp; FLOOR=tcp-mask
    : "${SERVERS:=tcp tcp-mask tether tether-lib fastwebsockets tungstenite}"
fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench-peers"
mkdir -p "$OUT"
rm -f "$OUT"/*.json

# 10,000 idle connections need that many descriptors in the client and in
# each server (both inherit this limit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((IDLE + 512)) ] || [ "$(ulimit -n)" -lt $((BCAST + 512)) ]; then
    echo "warning: ulimit -n is $(ulimit -n); lowering connection counts" >&2
    IDLE=$(( $(ulimit -n) - 512 )); BCAST=$IDLE
fi

echo "== building (release)"
cargo build --release -q -p tether-ws-cli
cargo build --release -q --manifest-path benches/peers/Cargo.toml
TETHER="$ROOT/target/release/tether"
PEERS="$ROOT/benches/peers/target/release"

declare -A PORT=([tcp]=19104 [tcp-mask]=19106 [tether]=19101 [tether-lib]=19105 [fastwebsockets]=19102 [tungstenite]=19103 [tls]=19107 [tls-mask]=19108)
declare -A PID=()

serve_flags=(--listen "127.0.0.1:${PORT[tether]}" --max-message-size 2M --log warn)
# Newer `tether serve` limits connections; lift the limits for the idle case.
if "$TETHER" serve --help 2>/dev/null | grep -q -- '--max-connections-per-ip'; then
    serve_flags+=(--max-connections 100000 --max-connections-per-ip 100000)
fi
peer_flags=()
bench_flags=()
if [ "$TLS" = 1 ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
    serve_flags+=(--tls-cert "$OUT/cert.pem" --tls-key "$OUT/key.pem")
    peer_flags=(--tls "$OUT/cert.pem" "$OUT/key.pem")
    bench_flags=(--cacert "$OUT/cert.pem")
fi

start_server() {
    local s="$1" port="${PORT[$1]}"
    case "$s" in
        tether) "$TETHER" serve "${serve_flags[@]}" >"$OUT/server-$s.log" 2>&1 & ;;
        fastwebsockets) "$PEERS/fastwebsockets-echo" --listen "127.0.0.1:$port" "${peer_flags[@]}" >"$OUT/server-$s.log" 2>&1 & ;;
        tether-lib) "$PEERS/tether-echo" --listen "127.0.0.1:$port" "${peer_flags[@]}" >"$OUT/server-$s.log" 2>&1 & ;;
        tungstenite) "$PEERS/tungstenite-echo" --listen "127.0.0.1:$port" "${peer_flags[@]}" >"$OUT/server-$s.log" 2>&1 & ;;
        tcp|tls) "$PEERS/tcp-echo" --listen "127.0.0.1:$port" "${peer_flags[@]}" >"$OUT/server-$s.log" 2>&1 & ;;
        tcp-mask|tls-mask) "$PEERS/tcp-echo" --listen "127.0.0.1:$port" --unmask "${peer_flags[@]}" >"$OUT/server-$s.log" 2>&1 & ;;
    esac
    PID[$s]=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "server $s did not start; its log:" >&2
    cat "$OUT/server-$s.log" >&2
    exit 1
}

stop_server() {
    local pid="${PID[$1]:-}"
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset "PID[$1]"
    fi
}

stop_all() {
    for s in $SERVERS; do stop_server "$s"; done
}
trap stop_all EXIT INT TERM

WS=ws
[ "$TLS" = 1 ] && WS=wss
url_of() {
    case "$1" in
        tether) echo "$WS://127.0.0.1:${PORT[tether]}/echo" ;;
        tcp|tcp-mask) echo "127.0.0.1:${PORT[$1]}" ;;
        tls|tls-mask) echo "tls://127.0.0.1:${PORT[$1]}" ;;
        *) echo "$WS://127.0.0.1:${PORT[$1]}/" ;;
    esac
}

# name | tether bench flags
CASES=(
    "100c x 20B d1|-c 100 -s 20 -d 1"
    "100c x 20B d16|-c 100 -s 20 -d 16"
    "10c x 16KiB|-c 10 -s 16K -d 1"
    "500c x 16KiB|-c 500 -s 16K -d 1"
    "4c x 1MiB|-c 4 -s 1M -d 1"
)

if [ -n "$ONLY" ]; then
    kept=()
    for c in "${CASES[@]}"; do
        if printf '%s' "${c%%|*}" | grep -Eq -- "$ONLY"; then kept+=("$c"); fi
    done
    CASES=("${kept[@]}")
fi
nservers=$(wc -w <<<"$SERVERS")

echo "== machine: $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)$([ "$TLS" = 1 ] && echo ', over TLS')"
echo "== throughput: $ROUNDS round(s) x ${#CASES[@]} cases x $nservers servers, $DURATION each"
for s in $SERVERS; do start_server "$s"; done

servers=($SERVERS)
for round in $(seq "$ROUNDS"); do
    for ci in "${!CASES[@]}"; do
        name="${CASES[$ci]%%|*}"
        flags="${CASES[$ci]#*|}"
        # Rotate the server order each round and case.
        shift_by=$(( (round + ci) % ${#servers[@]} ))
        order=("${servers[@]:$shift_by}" "${servers[@]:0:$shift_by}")
        for s in "${order[@]}"; do
            extra=("${bench_flags[@]}")
            case "$s" in
                tcp|tls) extra+=(--raw-tcp) ;;
                tcp-mask|tls-mask) extra+=(--raw-tcp --raw-mask) ;;
            esac
            f="$OUT/r${round}-c${ci}-$s.json"
            # shellcheck disable=SC2086
            if ! "$TETHER" bench "$(url_of "$s")" $flags -t "$DURATION" --json \
                --server-pid "${PID[$s]}" "${extra[@]}" --log error >"$f" 2>"$f.err"; then
                echo "  bench failed: $name on $s (see $f.err)" >&2
                rm -f "$f"
            fi
            printf '  round %s  %-16s %-15s %s\n' "$round" "$name" "$s" \
                "$(jq -r '"\(.msgs_per_sec|floor) msg/s  p50 \(.latency_us.p50 // "-")us  errors \(.errors)"' "$f" 2>/dev/null || echo failed)"
        done
    done
done
stop_all
echo "== load average after the throughput runs: $(cut -d' ' -f1-3 /proc/loadavg)"

IDLE_SERVERS=""
[ "$IDLE" -gt 0 ] && IDLE_SERVERS=$(tr ' ' '\n' <<<"$SERVERS" | grep -Ev '^(tcp|tls)' | tr '\n' ' ')
[ -n "$IDLE_SERVERS" ] && echo "== idle memory: $IDLE connections per server (fresh server each)"
for s in $IDLE_SERVERS; do
    start_server "$s"
    f="$OUT/idle-$s.json"
    if ! "$TETHER" bench "$(url_of "$s")" --idle -c "$IDLE" -s 20 -t 1s --json \
        --server-pid "${PID[$s]}" "${bench_flags[@]}" --log error >"$f" 2>"$f.err"; then
        echo "  idle bench failed on $s (see $f.err)" >&2
        rm -f "$f"
    fi
    stop_server "$s"
done

if [ "$BCAST" -gt 0 ]; then
echo "== broadcast: $BCAST subscribers on tether serve /chat/bench"
start_server tether
RATE=$(( 2500000 / BCAST ))
[ "$RATE" -lt 1 ] && RATE=1
if ! "$TETHER" bench "ws://127.0.0.1:${PORT[tether]}/chat/bench" --broadcast -c "$BCAST" -s 20 \
    --rate "$RATE" -t "$DURATION" --json --server-pid "${PID[tether]}" --log error \
    >"$OUT/broadcast-tether.json" 2>"$OUT/broadcast-tether.json.err"; then
    echo "  broadcast bench failed (see $OUT/broadcast-tether.json.err)" >&2
    rm -f "$OUT/broadcast-tether.json"
fi
stop_server tether
fi

echo
SERVERS="$SERVERS" IDLE_SERVERS="$IDLE_SERVERS" BCAST="$BCAST" BASE="$BASE" FLOOR="$FLOOR" \
    python3 - "$OUT" "$ROUNDS" "${CASES[@]}" <<'PY'
import json, os, statistics, sys

out, rounds, cases = sys.argv[1], int(sys.argv[2]), [c.split("|")[0] for c in sys.argv[3:]]
servers = os.environ["SERVERS"].split()
idle_servers = os.environ["IDLE_SERVERS"].split()
base_server, floor_server = os.environ["BASE"], os.environ["FLOOR"]
label = {"tcp": "raw TCP echo", "tcp-mask": "raw TCP + masking (floor)", "tls": "raw TLS echo", "tls-mask": "raw TLS + masking (floor)", "tether": "tether serve", "tether-lib": "tether (library echo)", "fastwebsockets": "fastwebsockets", "tungstenite": "tokio-tungstenite"}
if base_server == "tls":
    label.update({s: label[s] + " (TLS)" for s in ("tether", "tether-lib", "fastwebsockets", "tungstenite")})
base_name = label[base_server]

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def server_pct(r):
    return ((r.get("server") or {}).get("cpu") or {}).get("percent")

def cpu_us_per_msg(runs, pct):
    """Median CPU time per message (us) from the CPU percent `pct(r)` of
    each run that measured its server; "-" if none did."""
    v = med([pct(r) / 100 / r["msgs_per_sec"] * 1e6
             for r in runs if r["msgs_per_sec"] > 0 and server_pct(r) is not None])
    return "-" if v is None else f"{v:.2f}"

if cases:
    print(f"Medians of {rounds} round(s); ratio = msgs/s / {base_name} msgs/s; vs floor = msgs/s / masking floor msgs/s; cpu = % of one core (client / server)")
    print(f"per round: each round's msgs/s / the same round's {base_name} (the spread between rounds)")
    print()
    print("| case | server | msgs/s | MB/s | ratio vs raw | per round | vs floor | p50 us | p99 us | errors | cpu client/server | server CPU us/msg | client+server CPU us/msg |")
    print("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|")
    for ci, case in enumerate(cases):
        base = floor = None
        raw_rounds = [load(os.path.join(out, f"r{r}-c{ci}-{base_server}.json")) for r in range(1, rounds + 1)]
        for s in servers:
            runs = [load(os.path.join(out, f"r{r}-c{ci}-{s}.json")) for r in range(1, rounds + 1)]
            paired = " / ".join(
                f"{a['msgs_per_sec'] / b['msgs_per_sec']:.2f}"
                for a, b in zip(runs, raw_rounds)
                if a and b and b["msgs_per_sec"] > 0
            ) or "-"
            runs = [r for r in runs if r]
            if not runs:
                print(f"| {case} | {label[s]} | failed | | | | | | | | | | |")
                continue
            rate = med([r["msgs_per_sec"] for r in runs])
            mbps = med([r["mb_per_sec"] for r in runs])
            p50 = med([(r.get("latency_us") or {}).get("p50") for r in runs])
            p99 = med([(r.get("latency_us") or {}).get("p99") for r in runs])
            errs = sum(r["errors"] for r in runs)
            ccpu = med([r["client_cpu"]["percent"] for r in runs])
            scpu = med([server_pct(r) for r in runs])
            if s == base_server:
                base = rate
            if s == floor_server:
                floor = rate
            ratio = f"{rate / base:.2f}x" if base else "-"
            vs_floor = f"{rate / floor:.2f}x" if floor else "-"
            fmt = lambda v: "-" if v is None else f"{v:.0f}"
            # CPU time per message is steadier than throughput on a shared VM:
            # it does not depend on how the scheduler interleaves the two sides.
            per = cpu_us_per_msg(runs, server_pct)
            # Both processes together: with the two cores saturated, throughput
            # goes as its inverse, so its ratio to the raw pair's bounds the
            # throughput ratio (and shows what the load generator costs).
            pair = cpu_us_per_msg(runs, lambda r: server_pct(r) + r["client_cpu"]["percent"])
            print(f"| {case} | {label[s]} | {rate:,.0f} | {mbps:,.1f} | {ratio} | {paired} | {vs_floor} | {fmt(p50)} | {fmt(p99)} | {errs} | {fmt(ccpu)} / {fmt(scpu)} | {per} | {pair} |")
if idle_servers:
    print()
    print("| idle connections | server | connected | server RSS before -> after (KiB) | bytes per connection |")
    print("|---|---|---:|---|---:|")
for s in idle_servers:
    r = load(os.path.join(out, f"idle-{s}.json"))
    if not r:
        print(f"| - | {label[s]} | failed | | |")
        continue
    sv = r.get("server") or {}
    per = sv.get("rss_per_connection_bytes")
    print(f"| {r['connections']} | {label[s]} | {r['connected']} | {sv.get('rss_before_kib')} -> {sv.get('rss_after_kib')} | {'-' if per is None else f'{per:,.0f}'} |")
if int(os.environ["BCAST"]) <= 0:
    sys.exit(0)
print()
r = load(os.path.join(out, "broadcast-tether.json"))
print("| broadcast | subscribers | published | delivered msgs/s | p50 us | p99 us | errors | close codes | cpu client/server |")
print("|---|---:|---:|---:|---:|---:|---:|---|---|")
if r:
    lat = r.get("latency_us") or {}
    scpu = ((r.get("server") or {}).get("cpu") or {}).get("percent")
    codes = ", ".join(f"{k}: {v}" for k, v in r["close_codes"].items())
    print(f"| tether /chat/bench | {r['connected']} | {r['messages_sent']:,} | {r['msgs_per_sec']:,.0f} | {lat.get('p50', '-')} | {lat.get('p99', '-')} | {r['errors']} | {codes} | {r['client_cpu']['percent']:.0f} / {'-' if scpu is None else f'{scpu:.0f}'} |")
else:
    print("| tether /chat/bench | failed | | | | | | | |")
PY
