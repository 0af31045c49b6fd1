#!/usr/bin/env bash
# Operations checks of `tether serve` that need tools beside cargo:
#   1. /metrics parsed by the Prometheus Python client's parser (pinned, in
#      .cache/ops-venv), on the admin listener and behind a metrics token;
#   2. packaging/tether.service checked by `systemd-analyze verify` (any
#      message fails, unknown keys included), its ExecStart arguments run
#      with --check-config against packaging/tether.toml;
#   3. packaging/Containerfile, which cannot be built without a container
#      engine: its multi-stage shape, a non-root USER, the files it copies,
#      and its ENTRYPOINT + CMD run with --check-config against the config
#      it ships;
#   4. the README's production configuration, with --check-config (its TLS
#      and JWKS files made here).
#
#   scripts/ops/run.sh                               # builds target/debug/tether
#   TETHER_BIN=target/release/tether scripts/ops/run.sh
#
# Every server started here listens on 127.0.0.1 (free ports) and is
# stopped by PID. Prints `ops: N passed, M failed`; non-zero if any failed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TMP=$(mktemp -d)
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

BIN=${TETHER_BIN:-}
if [ -z "$BIN" ]; then
    cargo build -q -p tether-ws-cli || { echo "cargo build failed" >&2; exit 2; }
    BIN=$ROOT/target/debug/tether
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# ------------------------------------------------ 1. metrics, strictly parsed
VENV="$ROOT/.cache/ops-venv"
PROM_PIN="prometheus_client==0.26.0"
if ! "$VENV/bin/python" -c 'import prometheus_client, sys; sys.exit(prometheus_client.__version__ != "0.26.0")' 2>/dev/null; then
    echo "creating $VENV with $PROM_PIN"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "$PROM_PIN" || { echo "cannot set up $VENV" >&2; exit 2; }
fi

# Start `tether serve` with config $1; sets LISTEN and ADMIN from its stdout.
start() {
    local out="$TMP/out.$RANDOM"
    "$BIN" serve --config "$1" >"$out" 2>>"$TMP/server.log" &
    PIDS+=($!)
    LISTEN="" ADMIN=""
    for _ in $(seq 1 200); do
        LISTEN=$(sed -n 's/^listening on http:\/\///p' "$out" | head -1)
        ADMIN=$(sed -n 's/^admin listening on http:\/\///p' "$out" | head -1)
        [ -n "$LISTEN" ] && [ -n "$ADMIN" ] && return 0
        sleep 0.05
    done
    cat "$TMP/server.log" >&2
    return 1
}

cat >"$TMP/metrics.toml" <<'TOML'
[[listen]]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
metrics_token = "ops-check"
[[route]]
path = "/echo"
kind = "echo"
[[route]]
path = "/chat/{room}"
kind = "room"
TOML
if start "$TMP/metrics.toml"; then
    # One WebSocket handshake, so the histogram has an observation.
    "$BIN" connect "ws://$LISTEN/echo" </dev/null >/dev/null 2>&1 || true
    if "$VENV/bin/python" scripts/ops/check_metrics.py "http://$ADMIN/metrics" ops-check; then
        pass "metrics parse with prometheus_client"
    else
        fail "metrics parse with prometheus_client"
    fi
    code=$("$VENV/bin/python" -c 'import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)' "http://$ADMIN/metrics")
    [ "$code" = 401 ] && pass "metrics token required" || fail "metrics token required" "got $code"
else
    fail "server with an admin listener starts"
fi

# ------------------------------------------------ 2. the systemd unit
UNIT=packaging/tether.service
if ! command -v systemd-analyze >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    echo "installing systemd (for systemd-analyze)"
    { [ -f /tmp/.tether-apt-updated ] || { $SUDO apt-get update -qq && touch /tmp/.tether-apt-updated; }; } >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd >/dev/null 2>&1
fi
if command -v systemd-analyze >/dev/null; then
    # The unit names the installed binary; verify it against the one built.
    sed "s|/usr/local/bin/tether|$BIN|g" "$UNIT" >"$TMP/tether.service"
    msg=$(cd "$TMP" && systemd-analyze verify ./tether.service 2>&1)
    if [ $? -eq 0 ] && [ -z "$msg" ]; then
        pass "systemd-analyze verify $UNIT"
    else
        fail "systemd-analyze verify $UNIT" "$msg"
    fi
    exposure=$(cd "$TMP" && systemd-analyze security --offline=yes ./tether.service 2>/dev/null | sed -n 's/.*Overall exposure level for tether.service: \([0-9.]*\).*/\1/p')
    echo "   systemd-analyze security: exposure ${exposure:-?} (0 = most restricted, 10 = none)"
    for key in DynamicUser=yes ProtectSystem=strict NoNewPrivileges=yes LimitNOFILE= \
               'ExecReload=/bin/kill -HUP $MAINPID' Restart=on-failure; do
        grep -qF "$key" "$UNIT" || fail "$UNIT has $key"
    done
else
    echo "SKIP systemd-analyze verify: the systemd package cannot be installed here (no apt-get or no network)"
fi
start_args=$(sed -n 's/^ExecStart=//p' "$UNIT" | head -1)
read -r -a argv <<<"$start_args"
[ "${argv[0]}" = /usr/local/bin/tether ] || fail "ExecStart runs /usr/local/bin/tether" "${argv[0]}"
argv=("${argv[@]:1}")
argv=("${argv[@]//\/etc\/tether\/tether.toml/$ROOT/packaging/tether.toml}")
if out=$("$BIN" "${argv[@]}" --check-config 2>&1); then
    pass "ExecStart arguments with packaging/tether.toml: $out"
else
    fail "ExecStart arguments with packaging/tether.toml" "$out"
fi

# ------------------------------------------------ 3. the container file
CF=packaging/Containerfile
froms=$(grep -c '^FROM ' "$CF")
[ "$froms" -ge 2 ] && grep -q '^COPY --from=build ' "$CF" && pass "$CF is multi-stage" || fail "$CF is multi-stage"
user=$(sed -n 's/^USER \([^:]*\).*/\1/p' "$CF" | tail -1)
if [ -n "$user" ] && [ "$user" != 0 ] && [ "$user" != root ]; then pass "$CF runs as $user"; else fail "$CF runs as non-root" "USER ${user:-missing}"; fi
# The build stage builds the package whose binary is `tether`.
grep -q 'cargo build --release --locked -p tether-ws-cli' "$CF" \
    && grep -A1 '^\[\[bin\]\]' crates/cli/Cargo.toml | grep -q 'name = "tether"' \
    && grep -q 'target/release/tether ' "$CF" \
    && pass "$CF builds the tether binary" || fail "$CF builds the tether binary"
cargo metadata --format-version 1 --no-deps --locked >/dev/null 2>&1 \
    && pass "Cargo.lock is current (--locked builds)" || fail "Cargo.lock is current (--locked builds)"
while read -r src dst; do
    [ -e "$src" ] && pass "$CF copies $src" || fail "$CF copies $src" "no such file"
    [ "$dst" = /etc/tether/tether.toml ] && shipped=$src
done < <(grep '^COPY ' "$CF" | grep -v -e '--from' -e '^COPY \. ' | awk '{print $2, $3}')
entry=$(sed -n 's/^ENTRYPOINT \[\(.*\)\]/\1/p' "$CF" | tr -d '"' | tr ',' ' ')
grep -q "^COPY --from=build .* $entry\$" "$CF" && pass "ENTRYPOINT $entry is the copied binary" || fail "ENTRYPOINT is the copied binary" "$entry"
read -r -a cmd <<<"$(sed -n 's/^CMD \[\(.*\)\]/\1/p' "$CF" | tr -d '",')"
cmd=("${cmd[@]//\/etc\/tether\/tether.toml/$ROOT/${shipped:-missing}}")
if out=$("$BIN" "${cmd[@]}" --check-config 2>&1); then
    pass "ENTRYPOINT + CMD with the shipped config: $out"
else
    fail "ENTRYPOINT + CMD with the shipped config" "$out"
fi

# ------------------------------------------------ 4. the README's hardened config
mkdir -p "$TMP/readme"
if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$TMP/readme/privkey.pem" -out "$TMP/readme/fullchain.pem" 2>/dev/null \
    && openssl ec -in "$TMP/readme/privkey.pem" -pubout -outform DER -out "$TMP/readme/pub.der" 2>/dev/null \
    && python3 - "$TMP/readme" <<'PY'
import base64, json, sys
d = sys.argv[1]
text = open("README.md").read().split("## Production", 1)[1]
toml = text.split("```toml\n", 1)[1].split("```", 1)[0]
open(f"{d}/tether.toml", "w").write(toml.replace("/etc/tether/", d + "/"))
point = open(f"{d}/pub.der", "rb").read()[-65:]  # uncompressed P-256 point
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = {"kty": "EC", "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:]), "kid": "k1", "alg": "ES256"}
json.dump({"keys": [key]}, open(f"{d}/jwks.json", "w"))
PY
then
    if out=$("$BIN" serve --config "$TMP/readme/tether.toml" --check-config 2>&1); then
        pass "README production config: $out"
    else
        fail "README production config" "$out"
    fi
else
    fail "README production config" "cannot make its TLS/JWKS files (openssl, python3)"
fi

echo "ops: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
