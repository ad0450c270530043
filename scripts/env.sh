# Sourced by the other scripts: checks the toolchain, prepares .venv, builds the native module.
# Idempotent and incremental: a second run takes seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ROOT

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo (Rust) is required: https://rustup.rs"
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "python3 (3.10 or newer) is required"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "python3 must be 3.10 or newer"

# One target directory outside the clone, shared by cargo, maturin and later runs; one target
# triple for every build so the core is compiled once (see NOTES: maturin and cargo agree).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/inloop-target}
CARGO_BUILD_TARGET=${CARGO_BUILD_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
export CARGO_BUILD_TARGET
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# Activate once, before any cargo build: pyo3's build script reruns when PATH changes.
# shellcheck disable=SC1091
source "$VENV/bin/activate"
stamp="$VENV/.requirements.sha"
want=$(sha256sum "$ROOT/python/requirements-dev.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python tools (pip)"
  python -m pip install -q --disable-pip-version-check -r "$ROOT/python/requirements-dev.txt"
  echo "$want" > "$stamp"
fi

build_python() {
  say "building the native module (maturin develop${1:+ $1})"
  local log
  log=$(mktemp)
  # Quiet when it works; the whole log when it does not.
  if ! (cd "$ROOT/python" && maturin develop ${1:-} >"$log" 2>&1); then
    cat "$log" >&2
    rm -f "$log"
    die "maturin develop failed"
  fi
  rm -f "$log"
  python -c 'import inloop._native' || die "the native module did not build"
}
