#!/usr/bin/env bash
# The `tether serve` demo page in a real headless Chromium.
#
# Installs what is missing (Debian `chromium` via apt-get, `playwright-core`
# via npm into scripts/browser/node_modules), builds the release binary,
# starts `tether serve` on a free port plus a second server on another port
# (another origin), then drives the page with scripts/browser/test.mjs:
# chat between two tabs, ticker updates, readyState, echo, close codes and
# reconnect, a cross-origin page that must be refused (403), and an
# EventSource that the server cuts off and that resumes with no gap. Then
# scripts/browser/h2.mjs: the demo page from a `--http2` TLS listener
# (a private CA's certificate made with openssl) over h2, with its
# WebSockets and an EventSource on that same connection.
# Screenshots go to reports/browser/. Servers are stopped by PID on exit.
#
# Usage: scripts/browser/run.sh     (prints `browser: N passed, M failed`)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

if ! [ -x /usr/bin/chromium ]; then
  echo "installing Debian package: chromium"
  if [ ! -f /tmp/.tether-apt-updated ]; then apt-get update -qq && touch /tmp/.tether-apt-updated; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! [ -d "$here/node_modules/playwright-core" ]; then
  echo "installing playwright-core (npm)"
  (cd "$here" && npm ci --no-audit --no-fund --silent)
fi

# TETHER_BIN: a tether binary already built (else the release one is built).
if [ -n "${TETHER_BIN:-}" ]; then
  bin=$TETHER_BIN
else
  (cd "$root" && cargo build --release -q -p tether-ws-cli --bin tether)
  bin="$root/target/release/tether"
fi

work=$(mktemp -d /tmp/tether-browser.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Wait for a server's "listening on URL" line; print the URL.
listen_url() {
  local out=$1 pid=$2
  for _ in $(seq 1 200); do
    if url=$(sed -n 's/^listening on //p' "$out" | head -n1) && [ -n "$url" ]; then
      echo "$url"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "server did not start; log:" >&2
  cat "$work"/*.log >&2 || true
  return 1
}

# The server under test: no config, the built-in demo.
"$bin" serve --listen 127.0.0.1:0 --publish-token browser-test >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
base=$(listen_url "$work/serve.out" "${pids[-1]}")

# Another origin: a second tether serve with a static page that tries to
# open a WebSocket to the first one.
mkdir -p "$work/evil"
cat >"$work/evil/index.html" <<'HTML'
<!doctype html><meta charset="utf-8"><title>other origin</title>
<h1>A page on another origin</h1><pre id="out">connecting...</pre>
<script>
  const target = new URLSearchParams(location.search).get("target");
  window.result = null;
  const r = { opened: false, error: false, code: null };
  const ws = new WebSocket(target);
  ws.onopen = () => { r.opened = true; };
  ws.onerror = () => { r.error = true; };
  ws.onclose = (e) => {
    r.code = e.code;
    window.result = r;
    document.getElementById("out").textContent = "WebSocket to " + target + ": " + JSON.stringify(r);
  };
</script>
HTML
cat >"$work/evil.toml" <<TOML
[[route]]
path = "/"
kind = "static"
dir = "$work/evil"
TOML
"$bin" serve --config "$work/evil.toml" --listen 127.0.0.1:0 >"$work/evil.out" 2>"$work/evil.log" &
pids+=($!)
evil=$(listen_url "$work/evil.out" "${pids[-1]}")

# Server-Sent Events: streams cut off every 1.5 s (sse_max_lifetime), which
# the page's EventSource must survive by resuming with Last-Event-ID.
cat >"$work/sse.toml" <<TOML
[[route]]
path = "/"
kind = "demo"

[[route]]
path = "/pubsub"
kind = "pubsub"
publish_token = "browser-test"
history_size = 1000
sse = true
sse_retry = "200ms"
sse_max_lifetime = "1500ms"
TOML
"$bin" serve --config "$work/sse.toml" --listen 127.0.0.1:0 >"$work/sse.out" 2>"$work/sse.log" &
pids+=($!)
sse=$(listen_url "$work/sse.out" "${pids[-1]}")

# HTTP/2: TLS with a private CA's certificate for localhost, trusted by
# Chromium through the hash of its public key.
pki="$work/pki"; mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=browser test CA" -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
  -CAcreateserial -days 2 -extfile "$pki/ext" -out "$pki/server.pem" 2>/dev/null
spki=$(openssl x509 -in "$pki/server.pem" -pubkey -noout | openssl pkey -pubin -outform der \
  | openssl dgst -sha256 -binary | base64)
"$bin" serve --listen 127.0.0.1:0 --http2 --tls-cert "$pki/server.pem" --tls-key "$pki/server.key" \
  --publish-token browser-test >"$work/h2.out" 2>"$work/h2.log" &
pids+=($!)
h2=$(listen_url "$work/h2.out" "${pids[-1]}")
h2="https://localhost:${h2##*:}"

mkdir -p "$root/reports/browser"
echo "demo server: $base   other origin: $evil   event streams: $sse   HTTP/2: $h2"
status=0
node "$here/test.mjs" "$base" "$evil" "$root/reports/browser" "$sse" || status=$?
node "$here/h2.mjs" "$h2" "$spki" "$root/reports/browser" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 40 lines)"
  tail -n 40 "$work/serve.log" | sed 's/\x1b\[[0-9;]*m//g'
  echo "--- event stream server log (last 20 lines)"
  tail -n 20 "$work/sse.log" | sed 's/\x1b\[[0-9;]*m//g'
  echo "--- HTTP/2 server log (last 20 lines)"
  tail -n 20 "$work/h2.log" | sed 's/\x1b\[[0-9;]*m//g'
fi
exit "$status"
