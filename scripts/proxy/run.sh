#!/usr/bin/env bash
# `tether serve` behind Debian's nginx, configured by docs/deployment/nginx.conf
# (the same file, with free loopback ports and a fresh self-signed
# certificate put in):
#   1. a WebSocket echo through nginx, over http and https (tether connect);
#   2. the client's address reaches tether through X-Forwarded-For: the test
#      client connects to nginx from 127.0.0.2 and tether's exec route sees
#      REMOTE_ADDR=127.0.0.2, also when the client sends a forged
#      X-Forwarded-For; over https it sees HTTPS=on and accepts an https
#      Origin (the same-origin check uses the forwarded scheme).
#
#   scripts/proxy/run.sh                               # builds target/debug/tether
#   TETHER_BIN=target/release/tether scripts/proxy/run.sh
#
# Installs nginx (apt-get, by package name) if it is missing. Everything
# listens on 127.0.0.1 on free ports; every process started here is stopped
# by PID. Prints `proxy: N passed, M failed`; non-zero if any failed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/scripts/proxy"
cd "$ROOT"
TMP=$(mktemp -d)
chmod 711 "$TMP"  # nginx's workers run as another user
PIDS=()
passed=0
failed=0
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    echo "installing nginx"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    { [ -f /tmp/.tether-apt-updated ] || { $SUDO apt-get update -qq && touch /tmp/.tether-apt-updated; }; } >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null 2>&1 \
        || { echo "cannot install nginx" >&2; exit 2; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

BIN=${TETHER_BIN:-}
if [ -z "$BIN" ]; then
    cargo build -q -p tether-ws-cli || { echo "cargo build failed" >&2; exit 2; }
    BIN=$ROOT/target/debug/tether
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY no_proxy NO_PROXY

# ------------------------------------------------ tether serve
cat >"$TMP/tether.toml" <<'TOML'
trusted_proxies = ["127.0.0.1/32"]
[[listen]]
addr = "127.0.0.1:0"
[[route]]
path = "/echo"
kind = "echo"
[[route]]
path = "/whoami"
kind = "exec"
command = ["sh", "-c", "echo \"$REMOTE_ADDR $HTTPS\"; read -r line"]
TOML
"$BIN" serve --config "$TMP/tether.toml" >"$TMP/tether.out" 2>"$TMP/tether.log" &
PIDS+=($!)
TETHER=""
for _ in $(seq 1 200); do
    TETHER=$(sed -n 's/^listening on http:\/\///p' "$TMP/tether.out" | head -1)
    [ -n "$TETHER" ] && break
    sleep 0.05
done
[ -n "$TETHER" ] || { cat "$TMP/tether.log" >&2; echo "tether serve did not start" >&2; exit 1; }

# ------------------------------------------------ nginx, from the documented file
HTTP_PORT=$(free_port)
HTTPS_PORT=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null \
    || { echo "openssl cannot make a certificate" >&2; exit 2; }
chmod 644 "$TMP/key.pem"
sed -e "s|listen 80;|listen 127.0.0.1:$HTTP_PORT;|" \
    -e "s|listen 443 ssl;|listen 127.0.0.1:$HTTPS_PORT ssl;|" \
    -e "s|server 127.0.0.1:8080;|server $TETHER;|" \
    -e "s|/etc/ssl/certs/chat.example.com.pem|$TMP/cert.pem|" \
    -e "s|/etc/ssl/private/chat.example.com.key|$TMP/key.pem|" \
    docs/deployment/nginx.conf >"$TMP/tether-site.conf"
for want in "127.0.0.1:$HTTP_PORT;" "127.0.0.1:$HTTPS_PORT ssl;" "server $TETHER;" "$TMP/cert.pem" "$TMP/key.pem"; do
    grep -qF "$want" "$TMP/tether-site.conf" || { echo "docs/deployment/nginx.conf changed: cannot put in $want" >&2; exit 1; }
done
mkdir -p "$TMP/nginx-temp"
chmod 777 "$TMP/nginx-temp"
cat >"$TMP/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log info;
events { worker_connections 64; }
http {
    access_log $TMP/nginx-access.log;
    client_body_temp_path $TMP/nginx-temp/body;
    proxy_temp_path $TMP/nginx-temp/proxy;
    fastcgi_temp_path $TMP/nginx-temp/fastcgi;
    uwsgi_temp_path $TMP/nginx-temp/uwsgi;
    scgi_temp_path $TMP/nginx-temp/scgi;
    include $TMP/tether-site.conf;
}
NGINX
if "$NGINX" -t -q -p "$TMP" -c "$TMP/nginx.conf" 2>"$TMP/nginx-t.log"; then
    pass "nginx -t accepts docs/deployment/nginx.conf"
else
    fail "nginx -t accepts docs/deployment/nginx.conf" "$(cat "$TMP/nginx-t.log")"
    echo "proxy: $passed passed, $failed failed"; exit 1
fi
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" 2>>"$TMP/nginx-error.log" &
PIDS+=($!)
wait_port "$HTTP_PORT" && wait_port "$HTTPS_PORT" || { cat "$TMP/nginx-error.log" >&2; echo "nginx did not start" >&2; exit 1; }

# ------------------------------------------------ 1. echo through nginx
for url in "ws://127.0.0.1:$HTTP_PORT/echo" "wss://localhost:$HTTPS_PORT/echo"; do
    out=$(printf 'hello through nginx\n' | timeout 20 "$BIN" connect --cacert "$TMP/cert.pem" --linger 1 "$url" 2>"$TMP/connect.err")
    if [ "$out" = "hello through nginx" ]; then
        pass "echo through nginx: $url"
    else
        fail "echo through nginx: $url" "got '$out'; $(cat "$TMP/connect.err")"
    fi
done

# ------------------------------------------------ 2. the client's address and scheme
check_whoami() {
    local label=$1 want=$2; shift 2
    local got
    got=$(timeout 20 python3 "$HERE/ws_client.py" 127.0.0.2 "127.0.0.1:$HTTP_PORT" /whoami "$@" 2>&1 | tail -1)
    if [ "$got" = "$want" ]; then pass "$label"; else fail "$label" "got '$got', want '$want'"; fi
}
check_whoami "X-Forwarded-For from nginx gives REMOTE_ADDR" "127.0.0.2 off"
check_whoami "a forged X-Forwarded-For is not believed" "127.0.0.2 off" "X-Forwarded-For: 203.0.113.9"
out=$(printf '' | timeout 20 "$BIN" connect --cacert "$TMP/cert.pem" --linger 1 \
    --origin "https://localhost:$HTTPS_PORT" "wss://localhost:$HTTPS_PORT/whoami" 2>"$TMP/connect.err")
if [ "$out" = "127.0.0.1 on" ]; then
    pass "X-Forwarded-Proto https: HTTPS=on and an https Origin is same-origin"
else
    fail "X-Forwarded-Proto https: HTTPS=on and an https Origin is same-origin" "got '$out'; $(cat "$TMP/connect.err")"
fi
if grep -q 'peer=127.0.0.2' "$TMP/tether.log"; then
    pass "tether's log names the client, not nginx"
else
    fail "tether's log names the client, not nginx" "$(grep -E 'open|refused' "$TMP/tether.log" | tail -3)"
fi

echo "proxy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
