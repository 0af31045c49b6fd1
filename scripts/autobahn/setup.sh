#!/usr/bin/env bash
# Set up the pinned Autobahn|Testsuite (wstest) venv, ported to Python 3.
#
# Usage:
#   scripts/autobahn/setup.sh                # wstest venv (idempotent; fast when up to date)
#   scripts/autobahn/setup.sh --force        # rebuild the wstest venv from scratch
#   scripts/autobahn/setup.sh --peers        # also the Python `websockets` peer venv
#   scripts/autobahn/setup.sh --regen-patch  # maintainers: rewrite wstest-py3.patch from
#                                            # the edited files in the wstest venv
#
# Environment:
#   AUTOBAHN_VENV        wstest venv          (default <repo>/.cache/autobahn-venv)
#   AUTOBAHN_PEERS_VENV  peer venv            (default <repo>/.cache/peers-venv)
#   AUTOBAHN_PYTHON      interpreter to use   (default python3.11 if on PATH, else python3;
#                                              needs lib2to3, i.e. Python <= 3.12)
#
# What it does (only PyPI is needed):
#   1. venv + `pip install --no-deps -r requirements-wstest.txt` (closed pinned set), `pip check`
#   2. lib2to3 over site-packages/autobahntestsuite, CRLF -> LF (the sdist ships CRLF)
#   3. `patch -p1` (relative to site-packages) with wstest-py3.patch: our py3 fixes
#   4. byte-compile, smoke-test `wstest -a`, check the INFORMATIONAL allowlist of check.py
#   5. write a stamp (hash of this script, the pins, the patch and the Python version);
#      re-running with the same inputs returns in well under a second.
#
# To change the port: run this script, edit the files under the venv's
# site-packages (autobahntestsuite/, autobahn/), run `setup.sh --regen-patch`,
# review `git diff scripts/autobahn/wstest-py3.patch`, then run this script
# again (the new hash forces a clean rebuild that applies the new patch).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${AUTOBAHN_VENV:-$REPO/.cache/autobahn-venv}
PEERS_VENV=${AUTOBAHN_PEERS_VENV:-$REPO/.cache/peers-venv}
REQS=$HERE/requirements-wstest.txt
PATCH_FILE=$HERE/wstest-py3.patch
STAMP=$VENV/.tether-autobahn-stamp
PEERS_PINS="websockets==15.0.1"
PEERS_STAMP=$PEERS_VENV/.tether-peers-stamp

# Cases whose outcome the suite itself always reports as INFORMATIONAL
# (their onConnectionLost sets behavior = Case.INFORMATIONAL unconditionally).
# Must match INFORMATIONAL_CASES in check.py; verified against the installed suite below.
INFORMATIONAL_CASE_FILES="case7_13_1.py case7_13_2.py case7_1_6.py"

log() { printf 'autobahn-setup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

FORCE=0 PEERS=0 REGEN=0
for arg in "$@"; do
  case $arg in
    --force) FORCE=1 ;;
    --peers) PEERS=1 ;;
    --regen-patch) REGEN=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

pick_python() {
  if [[ -n ${AUTOBAHN_PYTHON:-} ]]; then echo "$AUTOBAHN_PYTHON"; return; fi
  if command -v python3.11 >/dev/null 2>&1; then echo python3.11; return; fi
  echo python3
}
PY=$(pick_python)
command -v "$PY" >/dev/null 2>&1 || die "no Python interpreter '$PY' (set AUTOBAHN_PYTHON)"
PYVER=$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')

sha() { sha256sum | cut -d' ' -f1; }
site_packages() { "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

# Remove a venv directory, but only if it really is a venv (never an arbitrary dir).
remove_venv() {
  local d=$1
  if [[ -e $d ]]; then
    if [[ -f $d/pyvenv.cfg ]]; then
      rm -rf -- "$d"
    elif [[ -d $d && -z $(ls -A -- "$d") ]]; then
      rmdir -- "$d"
    else
      die "$d exists and is not a venv; refusing to delete it"
    fi
  fi
}

# Pristine suite sources as the venv sees them right after step 2 (pip + lib2to3 + LF).
lib2to3_and_lf() {  # $1 = directory containing autobahntestsuite/
  local sp=$1
  find "$sp/autobahntestsuite" -name __pycache__ -prune -exec rm -rf {} +
  "$VENV/bin/python" -W ignore -m lib2to3 -w -n -j 2 "$sp/autobahntestsuite" >"$VENV/lib2to3.log" 2>&1 \
    || { tail -20 "$VENV/lib2to3.log" >&2; die "lib2to3 failed (log: $VENV/lib2to3.log)"; }
  "$VENV/bin/python" - "$sp/autobahntestsuite" <<'EOF'
import pathlib, sys
for p in pathlib.Path(sys.argv[1]).rglob("*.py"):
    b = p.read_bytes()
    if b"\r\n" in b:
        p.write_bytes(b.replace(b"\r\n", b"\n"))
EOF
}

regen_patch() {
  [[ -x $VENV/bin/wstest ]] || die "no wstest venv at $VENV: run setup.sh first, then edit it"
  local tmp sp pins
  tmp=$(mktemp -d)
  trap 'rm -rf -- "$tmp"' RETURN
  sp=$(site_packages)
  pins=$(grep -E '^(autobahntestsuite|autobahn)==' "$REQS")
  log "building pristine (pip + lib2to3) tree in $tmp"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$tmp/a" $pins
  lib2to3_and_lf "$tmp/a"
  mkdir -p "$tmp/b"
  cp -r "$sp/autobahntestsuite" "$sp/autobahn" "$tmp/b/"
  (cd "$tmp" && diff -ruN -x __pycache__ -x '*.pyc' a/autobahn b/autobahn;
   diff -ruN -x __pycache__ -x '*.pyc' a/autobahntestsuite b/autobahntestsuite) \
    | sed -E 's/^((---|\+\+\+) [^\t]+)\t.*$/\1/' >"$tmp/new.patch" || true
  [[ -s $tmp/new.patch ]] || die "no differences found; refusing to write an empty patch"
  { cat <<'HEADER'
# wstest-py3.patch: Python 3 fixes for autobahntestsuite 25.10.1 / autobahn 0.10.9.
# Applied by scripts/autobahn/setup.sh with `patch -p1` in the venv's site-packages,
# AFTER lib2to3 and CRLF->LF normalisation of autobahntestsuite/.
# Generated by `setup.sh --regen-patch`; changes are marked "py3 port".
#  - payloads: the suite models them as py2 byte strings; they stay latin-1 `str`
#    inside the suite and FuzzingProtocol converts to/from bytes at the autobahn
#    boundary (send*/onMessage/onPong); non-ASCII literals in 6.2.x become UTF-8 octets
#  - bytes vs str in hex dumps, wire log, JSON/HTML report writers (utf-8 files)
#  - integer division (autobahn sendFrame payload_len, case 10.1.1)
#  - zope `implements` -> `@implementer`; (object, Case) MRO in generated cases
#  - txaio >= 2 needs txaio.use_twisted(); optional deps made lazy (pyOpenSSL for
#    wss only, jinja2, unittest2/serializer)
#  - fuzzingserver: spec key "interface" to bind (e.g. 127.0.0.1), prints the port
#    actually bound (so a spec URL with port 0 works)
HEADER
    cat "$tmp/new.patch"; } >"$PATCH_FILE"
  log "wrote $PATCH_FILE ($(grep -c '^+++ ' "$PATCH_FILE") files); review it, then re-run setup.sh"
}

setup_wstest() {
  local want
  want=$({ cat "$0" "$REQS" "$PATCH_FILE"; echo "$PYVER"; } | sha)
  if [[ $FORCE == 0 && -x $VENV/bin/wstest && -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
    log "wstest venv up to date ($VENV)"
    return 0
  fi

  command -v patch >/dev/null 2>&1 || die "'patch' is required (Debian: apt-get install patch)"
  "$PY" -c 'import lib2to3' 2>/dev/null \
    || die "$PY ($PYVER) has no lib2to3 (removed in Python 3.13); set AUTOBAHN_PYTHON to a Python 3.8-3.12"

  log "building wstest venv at $VENV with $PY ($PYVER)"
  remove_venv "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input --no-deps -r "$REQS"
  "$VENV/bin/pip" check --disable-pip-version-check >/dev/null \
    || { "$VENV/bin/pip" check; die "pinned set is not consistent (pip check)"; }

  local sp
  sp=$(site_packages)
  log "porting with lib2to3"
  lib2to3_and_lf "$sp"
  log "applying $(basename "$PATCH_FILE")"
  patch -p1 -d "$sp" --forward --batch --no-backup-if-mismatch -s <"$PATCH_FILE" \
    || die "wstest-py3.patch did not apply cleanly"
  # (autobahn/asyncio is py3.7-incompatible `asyncio.async` code that wstest never imports)
  "$VENV/bin/python" -m compileall -q -x '/autobahn/asyncio/' "$sp/autobahntestsuite" "$sp/autobahn" \
    || die "byte-compiling the ported sources failed"

  # smoke test: imports everything wstest needs
  "$VENV/bin/wstest" -a >/dev/null || die "'wstest -a' failed after porting"

  # check.py's INFORMATIONAL allowlist must match the suite's own case definitions
  local found
  found=$(grep -lE '^\s*self\.behavior = Case\.INFORMATIONAL' "$sp"/autobahntestsuite/case/case*.py \
            | xargs -n1 basename | sort | tr '\n' ' ' | sed 's/ $//')
  [[ $found == "$INFORMATIONAL_CASE_FILES" ]] \
    || die "suite's INFORMATIONAL cases changed: '$found' (update setup.sh and check.py)"

  echo "$want" >"$STAMP"
  log "wstest venv ready: $VENV/bin/wstest"
}

setup_peers() {
  local want
  want=$({ echo "$PEERS_PINS"; echo "$PYVER"; } | sha)
  if [[ $FORCE == 0 && -f $PEERS_STAMP && $(cat "$PEERS_STAMP") == "$want" ]]; then
    log "peer venv up to date ($PEERS_VENV)"
    return 0
  fi
  log "building peer venv at $PEERS_VENV ($PEERS_PINS)"
  remove_venv "$PEERS_VENV"
  mkdir -p "$(dirname "$PEERS_VENV")"
  "$PY" -m venv "$PEERS_VENV"
  # shellcheck disable=SC2086
  "$PEERS_VENV/bin/pip" install --quiet --disable-pip-version-check --no-input $PEERS_PINS
  echo "$want" >"$PEERS_STAMP"
  log "peer venv ready: $PEERS_VENV/bin/python"
}

if [[ $REGEN == 1 ]]; then
  regen_patch
  exit 0
fi

# serialize concurrent runs (e.g. two CI steps) on the same venv
mkdir -p "$(dirname "$VENV")"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV.lock"
  flock 9
fi

setup_wstest
if [[ $PEERS == 1 ]]; then
  setup_peers
fi
