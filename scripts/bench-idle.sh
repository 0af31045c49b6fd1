#!/usr/bin/env bash
# Idle connections at scale: hold N WebSocket connections open at once and
# report the servers' resident memory per connection.
#
#   scripts/bench-idle.sh                       # 100,000 connections to `tether serve`
#   scripts/bench-idle.sh --connections 19000   # one process, if the limit allows
#   scripts/bench-idle.sh --server lib          # the library's echo (benches/peers)
#   scripts/bench-idle.sh --hold 60             # seconds all connections stay open
#
# One process can hold only as many connections as its open-file limit
# allows (`ulimit -n`; the hard limit cannot be raised without
# CAP_SYS_RESOURCE). When N does not fit one process, the connections are
# split evenly over as many server processes (each on its own free port on
# 127.0.0.1) and as many `tether bench --idle` clients as needed, all
# started together. Each client reads its server's VmRSS before connecting
# and again after holding its connections for --hold seconds; the script
# samples the number of established server-side connections every second
# (`ss`), so the table shows that all N were open at the same time, not
# one shard after another. Closing handshakes get 60 s: 100,000 of them
# at once take a 2-core machine a while.
set -euo pipefail

N=100000
HOLD=45
SERVER=serve
while [ $# -gt 0 ]; do
    case "$1" in
        --connections) N="$2"; shift ;;
        --hold) HOLD="$2"; shift ;;
        --server) SERVER="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
case "$SERVER" in serve|lib) ;; *) echo "--server is serve or lib" >&2; exit 2 ;; esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench-idle"
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.err "$OUT"/*.log

HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=$(cat /proc/sys/fs/nr_open)
ulimit -n "$HARD"
LIMIT=$(ulimit -n)
# Room for the runtime, the listener and the client's own descriptors.
PER=$(( LIMIT - 1000 ))
[ "$PER" -lt 1 ] && { echo "ulimit -n is only $LIMIT" >&2; exit 1; }
SHARDS=$(( (N + PER - 1) / PER ))
# Ephemeral ports: each client talks to one server port, so the local
# range bounds one shard (Linux reuses a local port for other destinations).
read -r LO HI </proc/sys/net/ipv4/ip_local_port_range
if [ $(( (N + SHARDS - 1) / SHARDS )) -gt $(( HI - LO )) ]; then
    SHARDS=$(( (N + HI - LO - 1) / (HI - LO) ))
fi

echo "== building (release)"
cargo build --release -q -p tether-ws-cli
TETHER="$ROOT/target/release/tether"
if [ "$SERVER" = lib ]; then
    cargo build --release -q --manifest-path benches/peers/Cargo.toml --bin tether-echo
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PIDS=()
CLIENTS=()
cleanup() {
    for p in "${CLIENTS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "== $N idle connections: $SHARDS server process(es) of up to $(( (N + SHARDS - 1) / SHARDS )) (open-file limit $LIMIT per process), held ${HOLD} s"
PORTS=()
for i in $(seq 0 $(( SHARDS - 1 ))); do
    port=$(free_port)
    if [ "$SERVER" = serve ]; then
        "$TETHER" serve --listen "127.0.0.1:$port" --log warn \
            --max-connections 1000000 --max-connections-per-ip 1000000 >"$OUT/server-$i.log" 2>&1 &
    else
        "$ROOT/benches/peers/target/release/tether-echo" --listen "127.0.0.1:$port" >"$OUT/server-$i.log" 2>&1 &
    fi
    PIDS+=($!)
    PORTS+=("$port")
    up=0
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
        sleep 0.05
    done
    if [ "$up" = 0 ]; then
        echo "server $i did not start; its log:" >&2
        cat "$OUT/server-$i.log" >&2
        exit 1
    fi
done

path=/
[ "$SERVER" = serve ] && path=/echo
start=$(date +%s)
for i in $(seq 0 $(( SHARDS - 1 ))); do
    n=$(( N / SHARDS + (i < N % SHARDS ? 1 : 0) ))
    "$TETHER" bench "ws://127.0.0.1:${PORTS[$i]}$path" --idle -c "$n" -s 20 -t "${HOLD}s" \
        --close-timeout 60s --json --server-pid "${PIDS[$i]}" --log info >"$OUT/idle-$i.json" 2>"$OUT/idle-$i.err" &
    CLIENTS+=($!)
done

# Count established connections on the servers' ports while the clients hold them.
filter=$(printf 'sport = :%s or ' "${PORTS[@]}")
filter="( ${filter% or } )"
peak=0
peak_at=0
while :; do
    running=0
    for p in "${CLIENTS[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
    [ "$running" = 0 ] && break
    now=$(ss -Htn state established "$filter" | wc -l)
    if [ "$now" -gt "$peak" ]; then peak=$now; peak_at=$(( $(date +%s) - start )); fi
    sleep 1
done
failed=0
for p in "${CLIENTS[@]}"; do wait "$p" || failed=1; done
CLIENTS=()
[ "$failed" = 1 ] && echo "a client failed; see $OUT/idle-*.err" >&2

python3 - "$OUT" "$SHARDS" "$N" "$peak" "$peak_at" "$SERVER" <<'EOF'
import json, os, re, sys
out, shards, n, peak, peak_at, server = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
label = "tether serve /echo" if server == "serve" else "tether library echo"
print()
print(f"| shard | server | connected | errors | server RSS before -> after (KiB) | bytes per connection | client bytes per connection |")
print("|---:|---|---:|---:|---|---:|---:|")
tot_conn = tot_err = tot_grow = 0
for i in range(shards):
    try:
        r = json.load(open(os.path.join(out, f"idle-{i}.json")))
    except (OSError, ValueError):
        print(f"| {i} | {label} | failed | - | - | - | - |")
        continue
    s = r["server"]
    grow = (s["rss_after_kib"] - s["rss_before_kib"]) * 1024
    client = "-"
    m = re.search(r"client RSS (\d+) KiB for (\d+) connections", open(os.path.join(out, f"idle-{i}.err")).read())
    if m:
        client = f"{int(m.group(1)) * 1024 / int(m.group(2)):,.0f}"
    tot_conn += r["connected"]; tot_err += r["errors"]; tot_grow += grow
    print(f"| {i} | {label} | {r['connected']:,} | {r['errors']} | {s['rss_before_kib']} -> {s['rss_after_kib']} | {s['rss_per_connection_bytes']:,.0f} | {client} |")
per = tot_grow / tot_conn if tot_conn else float("nan")
print(f"| all | {label} | {tot_conn:,} of {n:,} | {tot_err} | +{tot_grow // 1024:,} | {per:,.0f} | |")
print()
print(f"peak established server-side connections, all shards at once: {peak:,} ({peak_at} s after the clients started)")
together = peak >= n
print(f"all {n:,} connections open at the same time: " + ("yes" if together else "NO"))
if tot_err:
    print(f"{tot_err:,} errors (see {out}/idle-*.json for samples)")
sys.exit(0 if together and tot_conn == n and tot_err == 0 else 1)
EOF
