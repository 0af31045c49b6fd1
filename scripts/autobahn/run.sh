#!/usr/bin/env bash
# Run the Autobahn|Testsuite against a WebSocket server or client, then check.py the report.
#
# Usage:
#   scripts/autobahn/run.sh server WS_URL [OUTDIR]
#       wstest -m fuzzingclient tests the server at WS_URL (e.g. ws://127.0.0.1:9001/echo;
#       the server must echo every message). Reports: OUTDIR, else $AUTOBAHN_OUTDIR,
#       else <repo>/reports/autobahn/server. Agent name: $AUTOBAHN_AGENT (default tether-server).
#   scripts/autobahn/run.sh client CLIENT_CMD [ARGS...]
#       starts wstest -m fuzzingserver on 127.0.0.1 (ephemeral port), runs
#       `CLIENT_CMD ARGS... ws://127.0.0.1:PORT` (URL appended as last argument; the client
#       does getCaseCount / runCase?case=N&agent=NAME / updateReports), then stops the
#       fuzzingserver (always). Reports: $AUTOBAHN_OUTDIR, else <repo>/reports/autobahn/client.
#       check.py takes the agent from $AUTOBAHN_AGENT, else the only agent in the report.
#
# Environment:
#   AUTOBAHN_CASES     comma-separated case globs to run      (default "*": all, incl. 12.*/13.*)
#   AUTOBAHN_EXCLUDE   comma-separated case globs to skip     (default none)
#   AUTOBAHN_AGENT     agent name (see above)
#   AUTOBAHN_OUTDIR    report directory (see above)
#   AUTOBAHN_TIMEOUT   limit in seconds for wstest (server) / the client command (client)
#                      (default 3600)
#   AUTOBAHN_VENV      wstest venv (default <repo>/.cache/autobahn-venv); setup.sh is run
#                      first (fast when up to date) unless AUTOBAHN_SKIP_SETUP=1
#   AUTOBAHN_ALLOW_NONLOOPBACK=1  allow a server WS_URL whose host is not loopback
#
# Exit status: 0 only if wstest (and the client) ran and check.py accepted every case.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${AUTOBAHN_VENV:-$REPO/.cache/autobahn-venv}
CASES=${AUTOBAHN_CASES:-*}
EXCLUDE=${AUTOBAHN_EXCLUDE:-}
TIMEOUT=${AUTOBAHN_TIMEOUT:-3600}

say() { printf 'autobahn: %s\n' "$*"; }
die() { printf 'autobahn: ERROR: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,26p' "$0" >&2; exit 2; }

[[ $# -ge 1 ]] || usage
MODE=$1
shift
case $MODE in
  server) [[ $# -ge 1 && $# -le 2 ]] || usage ;;
  client) [[ $# -ge 1 ]] || usage ;;
  -h|--help) usage ;;
  *) usage ;;
esac

if [[ ${AUTOBAHN_SKIP_SETUP:-0} != 1 ]]; then
  "$HERE/setup.sh"
fi
PY=$VENV/bin/python
WSTEST=$VENV/bin/wstest
[[ -x $WSTEST ]] || die "no wstest at $WSTEST (run scripts/autobahn/setup.sh)"

# make_spec MODE OUTDIR URL AGENT SPECFILE
make_spec() {
  "$PY" - "$@" "$CASES" "$EXCLUDE" <<'EOF'
import json, sys
mode, outdir, url, agent, specfile, cases, exclude = sys.argv[1:]
split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
spec = {"outdir": outdir, "cases": split(cases) or ["*"],
        "exclude-cases": split(exclude), "exclude-agent-cases": {}}
if mode == "server":
    spec["servers"] = [{"agent": agent, "url": url}]
else:
    spec["url"] = url
    spec["interface"] = "127.0.0.1"  # bind loopback only (py3-port spec key)
with open(specfile, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
EOF
}

prepare_outdir() {  # prints the absolute path
  mkdir -p "$1"
  (cd "$1" && pwd)
}

# number of cases wstest said it will run (from its log), empty if not found
planned_cases() { sed -n 's/^Ok, will run \([0-9][0-9]*\) test cases.*/\1/p' "$1" 2>/dev/null | head -n1 || true; }

report_tracebacks() {
  local n
  n=$(grep -c '^Traceback' "$1" || true)
  if [[ $n -gt 0 ]]; then
    say "WARNING: wstest log has $n Python traceback(s); first one:"
    awk '/^Traceback/{p=1} p{print; if (++k > 40) exit}' "$1" | sed 's/^/    /'
  fi
}

run_server_mode() {
  local url=$1
  local outdir=${2:-${AUTOBAHN_OUTDIR:-$REPO/reports/autobahn/server}}
  local agent=${AUTOBAHN_AGENT:-tether-server}
  local host
  host=$("$PY" -c 'import sys, urllib.parse; u = urllib.parse.urlsplit(sys.argv[1]); print(u.scheme, u.hostname or "")' "$url")
  case $host in
    "ws 127."*|"ws localhost"|"ws ::1") ;;
    "ws "*) [[ ${AUTOBAHN_ALLOW_NONLOOPBACK:-0} == 1 ]] \
              || die "refusing non-loopback URL $url (set AUTOBAHN_ALLOW_NONLOOPBACK=1)" ;;
    *) die "WS_URL must be ws://HOST:PORT/PATH (got $url)" ;;
  esac

  outdir=$(prepare_outdir "$outdir")
  rm -f -- "$outdir/index.json" "$outdir/index.html"
  local spec=$outdir/fuzzingclient.json log=$outdir/wstest.log
  make_spec server "$outdir" "$url" "$agent" "$spec"

  say "fuzzingclient -> $url, agent '$agent', cases '$CASES'${EXCLUDE:+, excluding '$EXCLUDE'}"
  say "log: $log"
  local t0=$SECONDS rc=0
  (cd "$outdir" && timeout "$TIMEOUT" "$WSTEST" -m fuzzingclient -s "$spec") >"$log" 2>&1 || rc=$?
  say "wstest fuzzingclient finished in $((SECONDS - t0))s (exit $rc)"
  [[ $rc == 124 ]] && say "ERROR: wstest hit AUTOBAHN_TIMEOUT=${TIMEOUT}s"
  grep -E '^Connection to .* failed' "$log" | head -n3 | sed 's/^/autobahn: /' || true
  report_tracebacks "$log"

  local n crc=0
  n=$(planned_cases "$log")
  "$PY" "$HERE/check.py" "$outdir/index.json" --agent "$agent" --label autobahn-server \
    ${n:+--expect-cases "$n"} || crc=$?
  [[ $rc == 0 && $crc == 0 ]]
}

WSTEST_PID=
stop_fuzzingserver() {
  if [[ -n $WSTEST_PID ]] && kill -0 "$WSTEST_PID" 2>/dev/null; then
    kill "$WSTEST_PID" 2>/dev/null || true
    wait "$WSTEST_PID" 2>/dev/null || true
  fi
  WSTEST_PID=
}

# Ask the fuzzingserver to (re)write its reports: a bare WebSocket handshake to
# /updateReports; it writes the reports, then sends a close frame.
update_reports() {
  "$PY" - "$1" <<'EOF'
import base64, os, socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=300)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /updateReports?agent=run.sh HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    head, sep, body = buf.partition(b"\r\n\r\n")
    if sep and body[:1] == b"\x88":  # close frame: reports are written
        break
s.close()
if not buf.startswith(b"HTTP/1.1 101"):
    sys.exit("updateReports handshake failed: %r" % buf[:200])
EOF
}

run_client_mode() {
  local outdir=${AUTOBAHN_OUTDIR:-$REPO/reports/autobahn/client}
  outdir=$(prepare_outdir "$outdir")
  rm -f -- "$outdir/index.json" "$outdir/index.html"
  local spec=$outdir/fuzzingserver.json log=$outdir/wstest.log
  make_spec client "$outdir" "ws://127.0.0.1:0" "" "$spec"

  trap stop_fuzzingserver EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  : >"$log"
  (cd "$outdir" && exec "$WSTEST" -m fuzzingserver -s "$spec" --webport 0) >>"$log" 2>&1 &
  WSTEST_PID=$!

  local port="" i
  for ((i = 0; i < 300; i++)); do
    port=$(sed -n 's/^Fuzzing server listening on .* port \([0-9][0-9]*\)$/\1/p' "$log" || true)
    [[ -n $port ]] && break
    kill -0 "$WSTEST_PID" 2>/dev/null || { tail -n 30 "$log" >&2; die "fuzzingserver exited early (log: $log)"; }
    sleep 0.1
  done
  [[ -n $port ]] || { tail -n 30 "$log" >&2; die "fuzzingserver did not start listening within 30s (log: $log)"; }

  local url=ws://127.0.0.1:$port
  say "fuzzingserver (pid $WSTEST_PID) on $url, cases '$CASES'${EXCLUDE:+, excluding '$EXCLUDE'}; log: $log"
  say "client: $* $url"
  local t0=$SECONDS crc=0 urc=0
  timeout "$TIMEOUT" "$@" "$url" || crc=$?
  say "client finished in $((SECONDS - t0))s (exit $crc)"
  [[ $crc == 124 ]] && say "ERROR: client hit AUTOBAHN_TIMEOUT=${TIMEOUT}s"
  if kill -0 "$WSTEST_PID" 2>/dev/null; then
    update_reports "$port" || urc=$?
  else
    say "ERROR: fuzzingserver died during the run"
    urc=1
  fi
  stop_fuzzingserver
  report_tracebacks "$log"

  local n krc=0
  n=$(planned_cases "$log")
  "$PY" "$HERE/check.py" "$outdir/index.json" ${AUTOBAHN_AGENT:+--agent "$AUTOBAHN_AGENT"} \
    --label autobahn-client ${n:+--expect-cases "$n"} || krc=$?
  [[ $crc == 0 ]] || say "client command failed (exit $crc)"
  [[ $crc == 0 && $urc == 0 && $krc == 0 ]]
}

case $MODE in
  server) run_server_mode "$@" ;;
  client) run_client_mode "$@" ;;
esac
