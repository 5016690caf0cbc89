#!/usr/bin/env bash
# Set up everything deskdojo needs on this machine: Debian packages, a running Docker
# engine, the .venv with torch and deskdojo, and the sandbox image. Idempotent, and a
# re-run with nothing missing takes about a second.
#
# Environment: PYTHON (interpreter for a new .venv, default python3),
#              DESKDOJO_SKIP_DOCKER=1 (no engine, no image: for the xvfb provider only),
#              DESKDOJO_SKIP_WEB=1 (no web image: Chromium + MiniWoB++).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
VENV=$REPO/.venv
VPY=$VENV/bin/python
PY=${PYTHON:-python3}
TORCH_VERSION=2.13.0
STAMP=$VENV/.deskdojo-installed
PIP_LOG=$VENV/.deskdojo-pip.log
DOCKERD_LOG=/var/log/deskdojo-dockerd.log
DOCKERD_PIDFILE=/run/deskdojo-dockerd.pid
SKIP_DOCKER=${DESKDOJO_SKIP_DOCKER:-0}
START_NS=$(date +%s%N)

step() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '    warning: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }
apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
# Run "$@" and, while it runs, say every HEARTBEAT_S seconds that it still does, so a log
# of a long step (apt-get, pip installing torch) shows the job alive; returns its status.
HEARTBEAT_S=20
heartbeat() {
  local label=$1 pid started=$SECONDS said=$SECONDS
  shift
  "$@" &
  pid=$!
  # a background job ignores Ctrl-C: pass it on as SIGTERM
  trap 'kill -TERM "$pid" 2>/dev/null; exit 130' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if ((SECONDS - said >= HEARTBEAT_S)) && kill -0 "$pid" 2>/dev/null; then
      info "... still $label ($((SECONDS - started)) s)"
      said=$SECONDS
    fi
  done
  trap - INT TERM
  wait "$pid"
}
# pip into the .venv; its chatter goes to a log that is shown only when it fails.
vpip() {
  "$VPY" -m pip install -q "$@" >"$PIP_LOG" 2>&1 && return 0
  grep -v '^WARNING: Location' "$PIP_LOG" | tail -n 25 >&2
  die "pip install $* failed (full log: $PIP_LOG)"
}

# --- 0. the interpreter: the .venv's when it exists, else the one to make it from ------
PROBE=$PY
[[ -x $VPY ]] && "$VPY" -c '' 2>/dev/null && PROBE=$VPY
read -r PY_OK PY_VERSION PY_SYSTEM PY_TK < <(
  "$PROBE" -c 'import sys, importlib.util as u
print(int(sys.version_info >= (3, 11)), sys.version.split()[0],
      int(sys.base_prefix == "/usr"), int(u.find_spec("tkinter") is not None))' 2>/dev/null
) || die "cannot run '$PROBE'; install Python 3.11+ (Debian: apt-get install -y python3 python3-venv) or set PYTHON=/path/to/python3.11"
[[ $PY_OK == 1 ]] || die "$PROBE is Python $PY_VERSION; deskdojo needs 3.11+. Set PYTHON=/path/to/python3.11 (and remove .venv if it was made with the old one)"

# --- 1. Debian packages -----------------------------------------------------------------
step "Debian packages"
PACKAGES=(
  xvfb xdotool x11-utils xterm openbox debootstrap
  bubblewrap # namespaces for the xvfb provider's guests (as root it refuses to start without)
  mousepad   # the real text editor of the text_editor tasks (the image has it too)
  # Qt's xcb platform plugin (PyQt6 panel on a real X display)
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
  libxcb-shape0 libxcb-randr0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1
  libfontconfig1 libdbus-1-3
)
[[ $SKIP_DOCKER == 1 ]] || PACKAGES+=(docker.io)
if [[ $PY_SYSTEM == 1 ]]; then
  PACKAGES+=(python3-venv)                      # Debian's python makes no venv without it
  [[ $PY_TK == 1 ]] || PACKAGES+=(python3-tk)   # the practice apps are Tk programs
elif [[ $PY_TK != 1 ]]; then
  warn "$PROBE has no tkinter: the xvfb provider's practice apps need it (rebuild that Python with tk-dev)"
fi
if ! command -v dpkg-query >/dev/null; then
  warn "not a Debian system: install the equivalents of: ${PACKAGES[*]}"
else
  # One dpkg-query for all packages; it exits non-zero when some are unknown.
  installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null | awk '$NF == "installed" {print $1}' || true)
  missing=()
  for pkg in "${PACKAGES[@]}"; do
    grep -qx -- "$pkg" <<<"$installed" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    info "all ${#PACKAGES[@]} present"
  elif is_root; then
    info "installing: ${missing[*]}"
    heartbeat "updating the package lists" apt-get update -qq || die "apt-get update failed (is a Debian mirror reachable?)"
    heartbeat "installing Debian packages" apt_install "${missing[@]}" \
      || die "apt-get install failed; run it by hand to see why: apt-get install -y --no-install-recommends ${missing[*]}"
    hash -r
    info "installed ${#missing[@]} package(s)"
  else
    warn "missing: ${missing[*]}"
    warn "not root, so not installing them; run:"
    warn "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
  fi
fi

# --- 2. Docker engine -------------------------------------------------------------------
engine_version() { docker info --format '{{.ServerVersion}}' 2>/dev/null; }
ENGINE_OK=0
if [[ $SKIP_DOCKER == 1 ]]; then
  step "Docker engine: skipped (DESKDOJO_SKIP_DOCKER=1; use --provider xvfb)"
else
  step "Docker engine"
  command -v docker >/dev/null || die "no docker CLI on PATH; install it: apt-get install -y docker.io (or DESKDOJO_SKIP_DOCKER=1 to set up without Docker)"
  if version=$(engine_version); then
    info "running: $version"
  else
    if [[ -n ${DOCKER_HOST:-} && ${DOCKER_HOST} != unix:///var/run/docker.sock && ${DOCKER_HOST} != unix:///run/docker.sock ]]; then
      die "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine, or unset DOCKER_HOST to use a local dockerd"
    fi
    is_root || die "the docker engine is not running and starting dockerd needs root: sudo nohup dockerd >/var/log/deskdojo-dockerd.log 2>&1 & (or DESKDOJO_SKIP_DOCKER=1)"
    pid=""
    if [[ -f $DOCKERD_PIDFILE ]]; then
      old=$(<"$DOCKERD_PIDFILE")
      if [[ $(cat "/proc/$old/comm" 2>/dev/null) == dockerd ]]; then
        pid=$old
        info "dockerd (pid $pid, started by an earlier setup) is still coming up"
      else
        rm -f "$DOCKERD_PIDFILE"
      fi
    fi
    if [[ -z $pid ]]; then
      dockerd_bin=$(command -v dockerd || echo /usr/sbin/dockerd)
      [[ -x $dockerd_bin ]] || die "dockerd not found; install it: apt-get install -y docker.io"
      info "starting $dockerd_bin (log: $DOCKERD_LOG)"
      # Lines already there, so that a failure shows only this start's (none on a new machine).
      log_lines=0
      [[ -f $DOCKERD_LOG ]] && log_lines=$(wc -l <"$DOCKERD_LOG")
      # Its own session, so that closing this terminal or killing this job leaves it running.
      setsid nohup "$dockerd_bin" >>"$DOCKERD_LOG" 2>&1 </dev/null &
      pid=$!
      echo "$pid" >"$DOCKERD_PIDFILE"
    fi
    for i in $(seq 120); do
      version=$(engine_version) && break
      ((i % 40 == 0)) && info "... still waiting for dockerd to answer ($((i / 2)) s)"
      [[ -d /proc/$pid ]] || { tail -n "+$((${log_lines:-0} + 1))" "$DOCKERD_LOG" | tail -n 15 >&2 || true; rm -f "$DOCKERD_PIDFILE"; die "dockerd exited; see $DOCKERD_LOG"; }
      sleep 0.5
    done
    [[ -n ${version:-} ]] || die "dockerd (pid $pid) did not answer within 60 s; see $DOCKERD_LOG. Stop it with: kill $pid"
    info "started: $version (pid $pid; stop it with: kill \$(cat $DOCKERD_PIDFILE))"
  fi
  ENGINE_OK=1
fi

# --- 3. Python environment --------------------------------------------------------------
step "Python environment (.venv)"
if [[ -e $VENV ]] && ! "$VPY" -c '' 2>/dev/null; then
  warn ".venv is broken (its Python is gone); recreating it"
  rm -rf "$VENV"
fi
if [[ ! -x $VPY ]]; then
  info "creating .venv with $PY ($PY_VERSION)"
  "$PY" -m venv "$VENV" || die "'$PY -m venv' failed; on Debian: apt-get install -y python3-venv"
  : >"$PIP_LOG"
  heartbeat "upgrading pip" vpip --upgrade pip
fi
read -r have_torch have_torchvision < <(
  "$VPY" -c 'import importlib.metadata as m
def v(name):
    try: return m.version(name)
    except m.PackageNotFoundError: return "-"
print(v("torch"), v("torchvision"))'
)
if [[ $have_torch == "$TORCH_VERSION" || $have_torch == "$TORCH_VERSION"+* ]]; then
  info "torch $have_torch"
else
  info "installing torch==$TORCH_VERSION (CPU build; first time takes a minute or two)"
  # Pinned exactly: a range would pull a newer CUDA build (GBs). Installed before the
  # project so that the project's own torch requirement is already met.
  heartbeat "installing torch" vpip "torch==$TORCH_VERSION"
fi
[[ $have_torchvision == - ]] || warn "torchvision $have_torchvision is installed and breaks transformers here; remove it: $VPY -m pip uninstall -y torchvision"
want_stamp=$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)
if [[ -f $STAMP && $(<"$STAMP") == "$want_stamp" && -x $VENV/bin/deskdojo ]]; then
  info "deskdojo (editable) up to date with pyproject.toml"
else
  info "installing deskdojo (editable) with its dev extras"
  heartbeat "installing deskdojo" vpip -e "$REPO[dev]"
  echo "$want_stamp" >"$STAMP"
fi

# --- 4. Sandbox image -------------------------------------------------------------------
if [[ $ENGINE_OK != 1 ]]; then
  step "Sandbox image: skipped (no Docker engine)"
else
  step "Sandbox image"
  "$VPY" -c '
import sys
from deskdojo.vm.image import build_image
try:
    tag = build_image(log=lambda *parts: print("    " + " ".join(map(str, parts)), flush=True))
except Exception as exc:  # the message says what failed and where the log is
    sys.exit(f"    {type(exc).__name__}: {exc}")
print("    ready:", tag)' || die "building the sandbox image failed (see above); retry with: $VENV/bin/deskdojo image build"
  # The web flavour (Debian's Chromium + the MiniWoB++ pages) is the desktop image plus
  # one layer: tests/test_web.py needs it. With the desktop layers cached it takes about
  # 20 s and 380 MB more disk; DESKDOJO_SKIP_WEB=1 skips it (those tests then build it).
  if [[ ${DESKDOJO_SKIP_WEB:-0} == 1 ]]; then
    step "Web sandbox image: skipped (DESKDOJO_SKIP_WEB=1)"
  else
    step "Web sandbox image (Chromium + MiniWoB++, for tests/test_web.py)"
    "$VPY" -c '
import sys, time
from deskdojo.vm.image import build_image
started = time.monotonic()
try:
    tag = build_image(flavor="web", log=lambda *parts: print("    " + " ".join(map(str, parts)), flush=True))
except Exception as exc:  # the message says what failed and where the log is
    sys.exit(f"    {type(exc).__name__}: {exc}")
print(f"    ready: {tag} ({time.monotonic() - started:.1f} s)")' || die "building the web image failed (see above); retry with: $VENV/bin/deskdojo image build --flavor web"
  fi
fi

elapsed_ms=$((($(date +%s%N) - START_NS) / 1000000))
printf '==> setup done in %d.%02d s\n' $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 10))
