#!/usr/bin/env bash
# Soak: many connections with churn against one `tether serve`, then leak checks.
#
#   scripts/soak.sh                                   # 10 minutes, 10,000 connections at a time
#   scripts/soak.sh --duration 90s --connections 2000 # about the CI version (scripts/test soak)
#   scripts/soak.sh --bench-args '--mix echo=1,reset=1 --lifetime 5s'
#
# Builds the release binary, starts `tether serve` on a free port of
# 127.0.0.1 with an echo, a room, a pub/sub (HTTP publishing with a token)
# and an exec (`cat`) route, and runs `tether bench --soak` against it: each
# connection slot opens echo, room, pub/sub, exec, slow-reader and reset
# connections one after another (see crates/cli/src/bench/soak/mod.rs).
# The generator samples the server's RSS and open descriptors
# (/proc/PID/status, /proc/PID/fd) every few seconds, and after the load
# checks that they were flat after warm-up (within --tolerance percent),
# that the server's connections (/proc/net/tcp) and exec children are
# gone within --drain-timeout, and that the server's /metrics close
# counters account for every connection. Any failed check fails the
# script; so does a server that died. Output: target/soak/.
set -euo pipefail

DURATION=10m
CONNECTIONS=10000
TOLERANCE=10
BENCH_ARGS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift ;;
        --connections) CONNECTIONS="$2"; shift ;;
        --tolerance) TOLERANCE="$2"; shift ;;
        --bench-args) BENCH_ARGS="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/soak"
mkdir -p "$OUT"
rm -f "$OUT"/server.log "$OUT"/report.txt "$OUT"/tether*.toml

# The server and the generator each hold one descriptor per connection.
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=$(cat /proc/sys/fs/nr_open)
ulimit -n "$HARD"
if [ "$CONNECTIONS" -gt $(( $(ulimit -n) - 2000 )) ]; then
    echo "--connections $CONNECTIONS does not fit the open-file limit $(ulimit -n) (2,000 kept for exec pipes and the runtime)" >&2
    exit 1
fi

echo "== building (release)"
cargo build --release -q -p tether-ws-cli
TETHER="$ROOT/target/release/tether"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN="soak-$RANDOM$RANDOM"
# Client-side publishing is allowed only where a route says so; the
# generator publishes over WebSocket only if this server accepts the option.
cat >"$OUT/tether.toml" <<EOF
[[listen]]
addr = "127.0.0.1:$PORT"

[limits]
max_connections = $(( CONNECTIONS * 2 ))
max_connections_per_ip = $(( CONNECTIONS * 2 ))

[[route]]
path = "/echo"
kind = "echo"

[[route]]
path = "/chat/{room}"
kind = "room"

[[route]]
path = "/pubsub"
kind = "pubsub"
publish_path = "/api/publish"
publish_token = "$TOKEN"

[[route]]
path = "/exec"
kind = "exec"
command = ["cat"]
max_processes = $(( CONNECTIONS / 10 + 1 ))
EOF
PUBLISH_ARGS=()
cp "$OUT/tether.toml" "$OUT/tether-publish.toml"
sed -i 's|^publish_token = .*|&\nclient_publish = true|' "$OUT/tether-publish.toml"
if "$TETHER" serve --config "$OUT/tether-publish.toml" --check-config >/dev/null 2>&1; then
    mv "$OUT/tether-publish.toml" "$OUT/tether.toml"
    PUBLISH_ARGS=(--client-publish)
else
    rm -f "$OUT/tether-publish.toml"
fi

SERVER=""
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$TETHER" serve --config "$OUT/tether.toml" --log warn >"$OUT/server.log" 2>&1 &
SERVER=$!
up=0
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi
    sleep 0.05
done
if [ "$up" = 0 ]; then
    echo "the server did not start; its log:" >&2
    cat "$OUT/server.log" >&2
    exit 1
fi

echo "== soak: $CONNECTIONS connections for $DURATION against tether serve (pid $SERVER, port $PORT)"
status=0
# Progress lines go to stderr as the run goes; the summary to stdout and target/soak/report.txt.
# shellcheck disable=SC2086
RUST_BACKTRACE=0 "$TETHER" bench --soak "ws://127.0.0.1:$PORT" -c "$CONNECTIONS" -t "$DURATION" \
    --server-pid "$SERVER" --publish-token "$TOKEN" --tolerance "$TOLERANCE" \
    --close-timeout 10s "${PUBLISH_ARGS[@]}" $BENCH_ARGS | tee "$OUT/report.txt" || status=1
if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "the server died during the soak; its log:" >&2
    tail -50 "$OUT/server.log" >&2
    status=1
fi
kill "$SERVER" 2>/dev/null || true
wait "$SERVER" 2>/dev/null || true
SERVER=""
if grep -q 'panicked' "$OUT/server.log"; then
    echo "the server panicked (target/soak/server.log):" >&2
    grep -A5 'panicked' "$OUT/server.log" | head -20 >&2
    status=1
fi
exit "$status"
