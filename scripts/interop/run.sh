#!/usr/bin/env bash
# Interoperability of Tether with other WebSocket implementations, both ways,
# and of `tether connect` through a real HTTP proxy (tinyproxy).
#
#   scripts/interop/run.sh            # set up peers, build, run everything
#   TETHER_BIN=target/debug/tether scripts/interop/run.sh   # skip the build
#
# Sets up (idempotently): .cache/peers-venv (Python `websockets`, and `h2`
# with `wsproto` for WebSockets over HTTP/2, pinned),
# scripts/interop/node_modules (Node `ws`, pinned by package-lock.json),
# tinyproxy (apt-get, if missing). Everything listens on 127.0.0.1 with
# free ports; every process started here is stopped by PID on exit.
# Prints `interop: N passed, M failed`; exits non-zero if anything failed.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/scripts/interop"
cd "$ROOT"
TMP=$(mktemp -d)
chmod 711 "$TMP"  # tinyproxy drops to `nobody` and must reach its log below
RESULTS="$TMP/results"
: >"$RESULTS"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

note() { echo "== $*" >&2; }
record() { tee -a "$RESULTS"; }
pass() { echo "PASS $1" | record; }
fail() { echo "FAIL $1${2:+: $2}" | record; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until FILE contains a line matching `listening on ...:PORT`; print PORT.
wait_listening() {
    local file=$1 pid=$2
    for _ in $(seq 1 200); do
        local port
        port=$(grep -o 'listening on [a-z]*://127.0.0.1:[0-9]*' "$file" 2>/dev/null | head -1 | sed 's/.*://')
        if [ -n "$port" ]; then echo "$port"; return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "server did not start; its output:" >&2
    cat "$file" >&2
    return 1
}

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# ---------------------------------------------------------------- set up
VENV="$ROOT/.cache/peers-venv"
PY_PINS=("websockets==15.0.1" "h2==4.3.0" "wsproto==1.3.2")
if ! "$VENV/bin/python" -c '
import sys, websockets, h2, wsproto
sys.exit((websockets.__version__, h2.__version__, wsproto.__version__) != ("15.0.1", "4.3.0", "1.3.2"))' 2>/dev/null; then
    note "setting up $VENV with ${PY_PINS[*]}"
    { [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"; } && "$VENV/bin/pip" install -q "${PY_PINS[@]}" || { echo "cannot set up $VENV" >&2; exit 2; }
fi
PY="$VENV/bin/python"

if [ ! -f "$HERE/node_modules/ws/package.json" ]; then
    note "installing Node ws (package-lock.json)"
    (cd "$HERE" && npm ci --no-audit --no-fund --silent) || { echo "npm ci failed" >&2; exit 2; }
fi

if ! command -v tinyproxy >/dev/null; then
    note "installing tinyproxy"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq tinyproxy >/dev/null || { echo "cannot install tinyproxy" >&2; exit 2; }
fi
TINYPROXY=$(command -v tinyproxy || echo /usr/bin/tinyproxy)

if [ -n "${TETHER_BIN:-}" ]; then
    BIN=$TETHER_BIN
else
    note "building tether (release)"
    cargo build --release -q -p tether-ws-cli || { echo "build failed" >&2; exit 2; }
    BIN="$ROOT/target/release/tether"
fi
# Peers on 127.0.0.1 must never go through a proxy from the environment.
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY no_proxy NO_PROXY

# The input for a full check: text, binary, 1 MiB, ping, then close.
FULL_INPUT="$TMP/full-input"
{
    echo "héllo tether"
    echo "/binary bin"
    head -c $((1 << 20)) /dev/zero | tr '\0' 'y'
    echo
    echo "/ping probe"
    # Let the echoes arrive first: a server may answer our Close before its
    # handler has echoed everything (Python websockets does).
    echo "/sleep 1"
    echo "/close 1000 done"
} >"$FULL_INPUT"

# tether connect as a client of URL: full check, then a 4000 close.
tether_client_checks() {
    local label=$1 url=$2 out="$TMP/client-$RANDOM.jsonl" status
    timeout 30 "$BIN" connect --jsonl --commands "$url" <"$FULL_INPUT" >"$out" 2>"$out.err"
    status=$?
    python3 "$HERE/check_jsonl.py" "$label" "$out" "$status" 1000 --full | record
    [ "$status" -eq 0 ] || sed 's/^/    /' "$out.err" >&2
    echo "/close 4000 custom" | timeout 30 "$BIN" connect --jsonl --commands "$url" >"$out" 2>"$out.err"
    status=$?
    python3 "$HERE/check_jsonl.py" "$label" "$out" "$status" 4000 | record
}

# tether connect with 100 piped lines: every reply arrives, exit status 0.
# (A server may answer the Close at once and drop replies not yet sent.)
piped_100_check() {
    local label="$1: 100 piped lines, 100 replies" url=$2 out="$TMP/pipe-$RANDOM" status
    seq 1 100 | timeout 30 "$BIN" connect "$url" >"$out" 2>"$out.err"
    status=$?
    if [ "$status" -eq 0 ] && seq 1 100 | cmp -s - "$out"; then
        pass "$label"
    else
        fail "$label" "status $status, $(wc -l <"$out") replies: $(tail -2 "$out.err")"
    fi
}

# ---------------------------------------------- Tether client -> peers
note "Tether client -> Python websockets echo server"
"$PY" "$ROOT/scripts/autobahn/py_echo_server.py" --port 0 --max-size $((4 << 20)) >"$TMP/py-server.log" 2>&1 &
PIDS+=($!)
if port=$(wait_listening "$TMP/py-server.log" $!); then
    tether_client_checks "python websockets server" "ws://127.0.0.1:$port/"
    piped_100_check "python websockets server" "ws://127.0.0.1:$port/"
else
    fail "python websockets server" "did not start"
fi

note "Tether client -> Node ws echo server"
node "$HERE/node_echo_server.js" 0 >"$TMP/node-server.log" 2>&1 &
PIDS+=($!)
if port=$(wait_listening "$TMP/node-server.log" $!); then
    tether_client_checks "node ws server" "ws://127.0.0.1:$port/"
    piped_100_check "node ws server" "ws://127.0.0.1:$port/"
else
    fail "node ws server" "did not start"
fi

# ---------------------------------------------- peers -> tether serve
note "Python websockets client and Node ws client -> tether serve /echo"
SERVE_PORT=$(free_port)
"$BIN" serve --listen "127.0.0.1:$SERVE_PORT" --max-message-size 4M >"$TMP/serve.log" 2>&1 &
SERVE_PID=$!
PIDS+=($SERVE_PID)
if wait_port "$SERVE_PORT"; then
    "$PY" "$HERE/py_client.py" "ws://127.0.0.1:$SERVE_PORT/echo" | record
    node "$HERE/node_client.js" "ws://127.0.0.1:$SERVE_PORT/echo" | record
    tether_client_checks "tether serve" "ws://127.0.0.1:$SERVE_PORT/echo"
    piped_100_check "tether serve /echo" "ws://127.0.0.1:$SERVE_PORT/echo"
else
    fail "tether serve" "did not start"; cat "$TMP/serve.log" >&2
fi

# ---------------------------------------------- HTTP/2 peers -> tether serve
note "Python h2 + wsproto -> tether serve over cleartext HTTP/2 (RFC 8441)"
H2_PORT=$(free_port)
printf '[[listen]]\naddr = "127.0.0.1:%s"\nhttp2 = true\n\n[[route]]\npath = "/"\nkind = "demo"\n\n[[route]]\npath = "/echo"\nkind = "echo"\n' \
    "$H2_PORT" >"$TMP/h2.toml"
"$BIN" serve --config "$TMP/h2.toml" --max-message-size 4M >"$TMP/serve-h2.log" 2>&1 &
PIDS+=($!)
if wait_port "$H2_PORT"; then
    timeout 60 "$PY" "$HERE/py_h2_client.py" 127.0.0.1 "$H2_PORT" | record
else
    fail "tether serve with http2 = true" "did not start"; cat "$TMP/serve-h2.log" >&2
fi

# ---------------------------------------------- through tinyproxy
note "tether connect through tinyproxy"
PROXY_PORT=$(free_port)
PROXY_DIR="$TMP/tinyproxy"
mkdir -p "$PROXY_DIR" && chmod 777 "$PROXY_DIR"
{
    echo "Port $PROXY_PORT"
    echo "Listen 127.0.0.1"
    echo "Timeout 60"
    echo "Allow 127.0.0.1"
    echo "MaxClients 20"
    echo "LogLevel Connect"
    echo "LogFile \"$PROXY_DIR/tinyproxy.log\""
    if [ "$(id -u)" -eq 0 ]; then echo "User nobody"; echo "Group nogroup"; fi
} >"$PROXY_DIR/tinyproxy.conf"
"$TINYPROXY" -d -c "$PROXY_DIR/tinyproxy.conf" >"$PROXY_DIR/stdout" 2>&1 &
PIDS+=($!)
if wait_port "$PROXY_PORT"; then
    URL="ws://127.0.0.1:$SERVE_PORT/echo"
    got=$(echo "through tinyproxy" | timeout 30 "$BIN" connect --proxy "http://127.0.0.1:$PROXY_PORT" "$URL" 2>"$TMP/p1.err"); status=$?
    if [ "$status" -eq 0 ] && [ "$got" = "through tinyproxy" ]; then pass "tinyproxy: --proxy http:// tunnel"; else fail "tinyproxy: --proxy http:// tunnel" "status $status, got '$got': $(cat "$TMP/p1.err")"; fi

    if grep -q "CONNECT" "$PROXY_DIR/tinyproxy.log" 2>/dev/null; then pass "tinyproxy: its log shows the CONNECT"; else fail "tinyproxy: its log shows the CONNECT" "$(cat "$PROXY_DIR/tinyproxy.log" 2>/dev/null | tail -3)"; fi

    got=$(echo "via env" | http_proxy="http://127.0.0.1:$PROXY_PORT" timeout 30 "$BIN" connect "$URL" 2>"$TMP/p2.err"); status=$?
    if [ "$status" -eq 0 ] && [ "$got" = "via env" ]; then pass "tinyproxy: http_proxy from the environment"; else fail "tinyproxy: http_proxy from the environment" "status $status: $(cat "$TMP/p2.err")"; fi

    # Negative control: a dead proxy in the environment must be used (and fail)...
    DEAD=$(free_port)
    echo x | http_proxy="http://127.0.0.1:$DEAD" timeout 30 "$BIN" connect "$URL" >/dev/null 2>&1; status=$?
    if [ "$status" -eq 1 ]; then pass "environment proxy is honoured (dead proxy fails with status 1)"; else fail "environment proxy is honoured" "status $status"; fi
    # ... unless no_proxy exempts the host.
    got=$(echo "bypass" | http_proxy="http://127.0.0.1:$DEAD" no_proxy="127.0.0.1" timeout 30 "$BIN" connect "$URL" 2>/dev/null); status=$?
    if [ "$status" -eq 0 ] && [ "$got" = "bypass" ]; then pass "no_proxy bypasses the proxy"; else fail "no_proxy bypasses the proxy" "status $status"; fi

    BIG="$TMP/big"; head -c $((1 << 20)) /dev/zero | tr '\0' 'z' >"$BIG"; echo >>"$BIG"
    got=$(timeout 30 "$BIN" connect --proxy "http://127.0.0.1:$PROXY_PORT" "$URL" <"$BIG" 2>/dev/null | wc -c); status=$?
    if [ "$got" -eq $(((1 << 20) + 1)) ]; then pass "tinyproxy: 1 MiB message through the tunnel"; else fail "tinyproxy: 1 MiB message through the tunnel" "got $got bytes"; fi

    got=$(printf 'a\nb\n' | timeout 30 "$BIN" connect --jsonl --proxy "http://127.0.0.1:$PROXY_PORT" "$URL" 2>/dev/null | grep -c '"event":"message"')
    if [ "$got" -eq 2 ]; then pass "tinyproxy: --jsonl session"; else fail "tinyproxy: --jsonl session" "got $got messages"; fi

    # wss:// end to end through the tunnel: a private CA, `tether serve` with TLS.
    note "wss:// through tinyproxy"
    PKI="$TMP/pki"; mkdir -p "$PKI"
    if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=interop test CA" -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null \
        && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=localhost" -keyout "$PKI/server.key" -out "$PKI/server.csr" 2>/dev/null \
        && printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$PKI/ext" \
        && openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
            -CAcreateserial -days 2 -extfile "$PKI/ext" -out "$PKI/server.pem" 2>/dev/null; then
        TLS_PORT=$(free_port)
        "$BIN" serve --listen "127.0.0.1:$TLS_PORT" --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" >"$TMP/serve-tls.log" 2>&1 &
        PIDS+=($!)
        if wait_port "$TLS_PORT"; then
            WSS="wss://localhost:$TLS_PORT/echo"
            got=$(echo "encrypted" | timeout 30 "$BIN" connect --cacert "$PKI/ca.pem" --proxy "http://127.0.0.1:$PROXY_PORT" "$WSS" 2>"$TMP/t1.err"); status=$?
            if [ "$status" -eq 0 ] && [ "$got" = "encrypted" ]; then pass "tinyproxy: wss:// with --cacert through the tunnel"; else fail "tinyproxy: wss:// with --cacert through the tunnel" "status $status: $(cat "$TMP/t1.err")"; fi
            echo x | timeout 30 "$BIN" connect --proxy "http://127.0.0.1:$PROXY_PORT" "$WSS" >/dev/null 2>"$TMP/t2.err"; status=$?
            if [ "$status" -eq 1 ] && grep -q "not signed by a trusted CA" "$TMP/t2.err"; then pass "wss:// without --cacert is refused with a clear error"; else fail "wss:// without --cacert is refused with a clear error" "status $status: $(cat "$TMP/t2.err")"; fi
        else
            fail "tether serve with TLS" "did not start: $(tail -3 "$TMP/serve-tls.log")"
        fi
    else
        fail "wss:// through tinyproxy" "openssl could not make the test certificates"
    fi
else
    fail "tinyproxy" "did not start: $(cat "$PROXY_DIR/stdout")"
fi

# ---------------------------------------------------------------- summary
passed=$(grep -c '^PASS' "$RESULTS")
failed=$(grep -c '^FAIL' "$RESULTS")
echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
