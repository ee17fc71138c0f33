#!/usr/bin/env bash
# Benchmark: `vmctx plan` vs cloud-init's OpenNebula datasource on the
# hol02-vpn context ISO. Prints figures; not a test, not run by CI.
# See tests/bench/README.md.
#
# Environment:
#   VMCTX=PATH            prebuilt vmctx binary (default: cargo build --release -p vmctx)
#   VMCTX_BENCH_CACHE=DIR cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/vmctx-bench)
#   VMCTX_RUNS=N          hyperfine runs for vmctx (default 200)
#   PY_RUNS=N             hyperfine runs for cloud-init (default 30)
#   VMCTX_BENCH_SKIP_CHECK=1  time VMCTX even if its output lacks 10.0.1.10
#                             (for a placeholder binary; the figures then mean nothing)
set -euo pipefail

die() { printf 'plan-vs-cloudinit: error: %s\n' "$*" >&2; exit 1; }
note() { printf '== %s\n' "$*" >&2; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
FIXTURE="$ROOT/vm-fixtures/contexts/hol02-vpn"
HELPER="$HERE/cloudinit_read_context.py"
CACHE="${VMCTX_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmctx-bench}"
VMCTX_RUNS="${VMCTX_RUNS:-200}"
PY_RUNS="${PY_RUNS:-30}"
PY=/usr/bin/python3   # Debian's interpreter: the Debian cloud-init is built for it

# Goals.
GOAL_VMCTX_MS=5
GOAL_RATIO=50

[[ -d "$FIXTURE" ]] || die "fixture folder missing: $FIXTURE"
[[ -f "$HELPER" ]] || die "helper missing: $HELPER"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd -P)"
case "$CACHE/" in
  "$(cd "$ROOT" && pwd -P)/"*) die "cache folder $CACHE is inside the repository; set VMCTX_BENCH_CACHE elsewhere" ;;
esac

IS_ROOT=0
[[ "$(id -u)" == 0 ]] && IS_ROOT=1
APT_UPDATED=0

apt_update_once() {
  if [[ $APT_UPDATED == 0 ]]; then
    note "apt-get update"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    APT_UPDATED=1
  fi
}

# apt_install PKG... : install Debian packages (root only).
apt_install() {
  if [[ $IS_ROOT != 1 ]]; then
    die "missing: $*. Run this script as root, or install them first: apt-get install -y $*"
  fi
  note "apt-get install $*"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
      || die "apt-get install $* failed"
  fi
}

# ---------------------------------------------------------------- tools
missing=()
command -v xorriso >/dev/null || missing+=(xorriso)
command -v hyperfine >/dev/null || missing+=(hyperfine)
[[ -x $PY ]] || missing+=(python3)
command -v bash >/dev/null || missing+=(bash)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

# ---------------------------------------------------------------- ISO + links
ISO="$CACHE/hol02-vpn.iso"
if [[ ! -s $ISO ]] || [[ -n "$(find "$FIXTURE" -newer "$ISO" -print -quit)" ]]; then
  note "building $ISO"
  rm -f "$ISO"
  xorriso -as mkisofs -V CONTEXT -J -R -o "$ISO" "$FIXTURE/" >/dev/null 2>"$CACHE/xorriso.log" \
    || die "xorriso failed, see $CACHE/xorriso.log"
fi

# cloud-init would mount the ISO; it gets the ISO's files extracted once.
ISO_DIR="$CACHE/hol02-vpn-iso"
if [[ ! -f "$ISO_DIR/context.sh" || "$ISO" -nt "$ISO_DIR/context.sh" ]]; then
  note "extracting $ISO to $ISO_DIR"
  [[ -d $ISO_DIR ]] && chmod -R u+w "$ISO_DIR" && rm -rf "$ISO_DIR"
  xorriso -osirrox on -indev "$ISO" -extract / "$ISO_DIR" >/dev/null 2>>"$CACHE/xorriso.log" \
    || die "xorriso extract failed, see $CACHE/xorriso.log"
  touch "$ISO_DIR/context.sh" 2>/dev/null || { chmod u+w "$ISO_DIR/context.sh"; touch "$ISO_DIR/context.sh"; }
fi

LINKS="$CACHE/hol02-vpn.links"
printf '%s\n' '02:00:0a:00:01:0a=eth0' '02:00:0a:00:03:05=eth1' >"$LINKS.tmp"
if cmp -s "$LINKS.tmp" "$LINKS"; then rm -f "$LINKS.tmp"; else mv -f "$LINKS.tmp" "$LINKS"; fi

# ---------------------------------------------------------------- cloud-init
CI_DIR="$CACHE/cloud-init"
CI_ROOT="$CI_DIR/root"
mkdir -p "$CI_DIR"
deb="$(ls -1 "$CI_DIR"/cloud-init_*.deb 2>/dev/null | tail -n 1 || true)"
if [[ -z $deb ]]; then
  note "apt-get download cloud-init"
  dl=(apt-get download -q)
  [[ $IS_ROOT == 1 ]] && dl+=(-o APT::Sandbox::User=root)
  if ! (cd "$CI_DIR" && "${dl[@]}" cloud-init >/dev/null 2>&1); then
    [[ $IS_ROOT == 1 ]] || die "apt-get download cloud-init failed (as root this script runs apt-get update first)"
    apt_update_once
    (cd "$CI_DIR" && "${dl[@]}" cloud-init >/dev/null) || die "apt-get download cloud-init failed"
  fi
  deb="$(ls -1 "$CI_DIR"/cloud-init_*.deb | tail -n 1)"
fi
if [[ ! -f "$CI_ROOT/.unpacked-$(basename "$deb")" ]]; then
  note "unpacking $(basename "$deb")"
  rm -rf "$CI_ROOT"
  dpkg -x "$deb" "$CI_ROOT" || die "dpkg -x $deb failed"
  touch "$CI_ROOT/.unpacked-$(basename "$deb")"
fi
CI_VERSION="$(dpkg-deb -f "$deb" Version)"
CI_PYPATH="$CI_ROOT/usr/lib/python3/dist-packages"
[[ -f "$CI_PYPATH/cloudinit/sources/DataSourceOpenNebula.py" ]] \
  || die "DataSourceOpenNebula.py not found under $CI_PYPATH"

ci_import_ok() { PYTHONPATH="$CI_PYPATH" "$PY" -c 'import cloudinit.sources.DataSourceOpenNebula' 2>/dev/null; }
if ! ci_import_ok; then
  # The python3-* packages from cloud-init's Depends.
  pydeps=()
  for p in $(dpkg-deb -f "$deb" Depends | tr ',|' '\n\n' | sed 's/(.*//; s/:.*//; s/[[:space:]]//g' | grep '^python3-' | sort -u); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pydeps+=("$p")
  done
  ((${#pydeps[@]})) || die "cannot import cloudinit.sources.DataSourceOpenNebula with $PY: $(PYTHONPATH="$CI_PYPATH" "$PY" -c 'import cloudinit.sources.DataSourceOpenNebula' 2>&1 | tail -n 1)"
  apt_install "${pydeps[@]}"
  ci_import_ok || die "still cannot import cloudinit.sources.DataSourceOpenNebula: $(PYTHONPATH="$CI_PYPATH" "$PY" -c 'import cloudinit.sources.DataSourceOpenNebula' 2>&1 | tail -n 1)"
fi
export PYTHONPATH="$CI_PYPATH"
# Byte-compile once (a Debian install does it at postinst time).
"$PY" -m compileall -q "$CI_PYPATH/cloudinit" >/dev/null 2>&1 || true

ci_summary="$("$PY" "$HELPER" "$ISO_DIR" "$LINKS" --print)" \
  || die "cloud-init helper failed on $ISO_DIR"
[[ $ci_summary == *10.0.1.10* ]] || die "cloud-init result lacks 10.0.1.10: $ci_summary"

# ---------------------------------------------------------------- vmctx
if [[ -n ${VMCTX:-} ]]; then
  VMCTX_BIN="$VMCTX"
else
  command -v cargo >/dev/null || die "cargo not found; install Rust or set VMCTX=path/to/vmctx"
  note "cargo build --release -p vmctx"
  (cd "$ROOT" && cargo build --release -q -p vmctx) || die "cargo build --release -p vmctx failed"
  VMCTX_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/x86_64-unknown-linux-gnu/release/vmctx"
fi
[[ -x $VMCTX_BIN ]] || die "vmctx binary not found or not executable: $VMCTX_BIN"
VMCTX_BIN="$(cd "$(dirname "$VMCTX_BIN")" && pwd -P)/$(basename "$VMCTX_BIN")"
VMCTX_ARGS=(plan --source "opennebula:$ISO" --links-file "$LINKS" --json)

set +e
plan_out="$("$VMCTX_BIN" "${VMCTX_ARGS[@]}" 2>"$CACHE/vmctx.stderr")"
plan_rc=$?
set -e
if [[ $plan_rc != 0 || $plan_out != *10.0.1.10* ]]; then
  msg="'$VMCTX_BIN ${VMCTX_ARGS[*]}' exited $plan_rc and its output lacks 10.0.1.10 (stderr: $(head -c 400 "$CACHE/vmctx.stderr"))"
  [[ ${VMCTX_BENCH_SKIP_CHECK:-0} == 1 ]] || die "$msg"
  printf 'plan-vs-cloudinit: WARNING: %s; timing it anyway (VMCTX_BENCH_SKIP_CHECK=1), the figures mean nothing\n' "$msg" >&2
fi

# ---------------------------------------------------------------- measure
RES="$CACHE/results"
mkdir -p "$RES"
q() { printf '%q ' "$@"; }   # hyperfine -N splits words like a POSIX shell

note "hyperfine: vmctx plan ($VMCTX_RUNS runs)"
hyperfine -N --style basic --warmup 20 --runs "$VMCTX_RUNS" \
  --export-json "$RES/vmctx.json" \
  -n "vmctx plan" "$(q "$VMCTX_BIN" "${VMCTX_ARGS[@]}")" >&2

note "hyperfine: cloud-init read_context_disk_dir ($PY_RUNS runs)"
hyperfine -N --style basic --warmup 3 --runs "$PY_RUNS" \
  --export-json "$RES/cloudinit.json" \
  -n "cloud-init $CI_VERSION" "$(q "$PY" "$HELPER" "$ISO_DIR" "$LINKS")" >&2

"$PY" - "$RES/vmctx.json" "$RES/cloudinit.json" "$CI_VERSION" "$GOAL_VMCTX_MS" "$GOAL_RATIO" "$VMCTX_BIN" <<'EOF'
import json, sys
vj, cj, civer, goal_ms, goal_ratio, vbin = sys.argv[1:7]
goal_ms, goal_ratio = float(goal_ms), float(goal_ratio)
def load(p):
    r = json.load(open(p))["results"][0]
    return r
v, c = load(vj), load(cj)
vm, cm = v["median"] * 1e3, c["median"] * 1e3
ratio = cm / vm if vm > 0 else float("inf")
def row(name, r):
    print("%-40s median %9.3f ms  mean %9.3f ± %7.3f ms  min %9.3f ms  runs %d" % (
        name, r["median"] * 1e3, r["mean"] * 1e3, (r["stddev"] or 0) * 1e3,
        r["min"] * 1e3, len(r["times"])))
print()
print("hol02-vpn context, whole process (fork+exec) wall time")
row("vmctx plan (%s)" % vbin.rsplit("/", 1)[-1], v)
row("cloud-init %s (python3)" % civer, c)
print("%-20s %.3f ms" % ("vmctx median:", vm))
print("%-20s %.3f ms" % ("cloud-init median:", cm))
print("%-20s %.1fx" % ("ratio:", ratio))
print("%-20s %s" % ("goal vmctx <= %g ms:" % goal_ms, "PASS" if vm <= goal_ms else "MISS"))
print("%-20s %s" % ("goal >= %gx faster:" % goal_ratio, "PASS" if ratio >= goal_ratio else "MISS"))
EOF
