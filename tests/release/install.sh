#!/usr/bin/env bash
# The no-toolchain install test: installs the artifacts of scripts/release.sh (default dist/)
# into a clean virtualenv and a clean Node project with cargo and rustc absent from PATH, and
# runs the README's Python and TypeScript quickstarts end to end: each agent waits on a task
# that the CLI answers (`inloop tasks answer`: the standalone binary for the Python agent, the
# wheel's console script for the TypeScript one), on SQLite and, when INLOOP_TEST_PG_URL is
# set, on PostgreSQL too (INLOOP_REQUIRE_PG=1 makes PostgreSQL mandatory). Also checks that the
# npm package without its platform package fails with an error naming the platform.
#
# usage: tests/release/install.sh [DIST]      (scripts/release.sh --fast builds DIST quickly)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIST=$(realpath "${1:-$ROOT/dist}")
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'install test: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1)
shopt -s nullglob
wheels=("$DIST"/inloop-"$VERSION"-cp310-abi3-manylinux_*_x86_64*.whl)
shopt -u nullglob
[ ${#wheels[@]} = 1 ] || die "no abi3 manylinux wheel in $DIST: run scripts/release.sh [--fast] first"
WHEEL=${wheels[0]}
BIN="$DIST/inloop"
NPM_MAIN="$DIST/inloop-$VERSION.tgz"
NPM_PLATFORM="$DIST/inloop-linux-x64-gnu-$VERSION.tgz"
for f in "$BIN" "$NPM_MAIN" "$NPM_PLATFORM"; do
  [ -f "$f" ] || die "missing $f: run scripts/release.sh [--fast] first"
done

# A PATH without any Rust toolchain (rustup's ~/.cargo/bin or any other directory holding
# cargo or rustc) and without the dev virtualenv.
clean=""
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -n "$d" ] || continue
  [ -e "$d/cargo" ] || [ -e "$d/rustc" ] && continue
  case "$d" in "$ROOT"/*|*/.cargo/*|*/.rustup/*) continue ;; esac
  clean="${clean:+$clean:}$d"
done
export PATH="$clean"
unset VIRTUAL_ENV CARGO_TARGET_DIR CARGO_BUILD_TARGET CARGO_HOME RUSTUP_HOME PYTHONPATH NODE_PATH
if command -v cargo >/dev/null || command -v rustc >/dev/null; then
  die "cargo or rustc is still on PATH ($PATH)"
fi
for tool in python3 node npm; do command -v "$tool" >/dev/null || die "$tool is required"; done
echo "    PATH without cargo and rustc: $PATH"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

say "Python: a clean virtualenv, pip install $(basename "$WHEEL")"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL"
native=$("$WORK/venv/bin/python" -c 'import inloop._native as n; print(n.__file__)')
case "$native" in
  "$WORK"/venv/*/inloop/_native.abi3.so) echo "    inloop._native: $native" ;;
  *) die "inloop._native loaded from $native, not the installed abi3 wheel" ;;
esac
PY_CLI="$WORK/venv/bin/inloop"

say "Node: a clean project, npm install of the two tarballs"
mkdir "$WORK/node"
cp "$HERE/quickstart.ts" "$HERE/tsconfig.json" "$WORK/node/"
printf '{ "name": "quickstart", "private": true, "type": "module" }\n' >"$WORK/node/package.json"
# zod (the quickstart's schemas), typescript and @types/node (to type-check it against the
# package's own .d.ts): the versions typescript/package.json pins.
pin() { node -p "require('$ROOT/typescript/package.json').devDependencies['$1']"; }
(cd "$WORK/node" && npm install --no-audit --no-fund --loglevel=error "$NPM_MAIN" "$NPM_PLATFORM" \
  "zod@$(pin zod)" "typescript@$(pin typescript)" "@types/node@$(pin @types/node)" >/dev/null)
addon="$WORK/node/node_modules/inloop-linux-x64-gnu/inloop.linux-x64-gnu.node"
[ -f "$addon" ] || die "npm did not install the platform package's addon"
find "$WORK/node/node_modules/inloop" -name '*.node' | grep . >/dev/null \
  && die "the main package holds an addon: it must come from the platform package"
cmp -s "$addon" <(tar -xzOf "$NPM_PLATFORM" package/inloop.linux-x64-gnu.node) \
  || die "the installed addon is not the one in $(basename "$NPM_PLATFORM")"
(cd "$WORK/node" && ./node_modules/.bin/tsc -p tsconfig.json) || die "the TypeScript quickstart does not type-check"

# Runs one quickstart agent in the background, answers its task from a CLI, checks its output.
#   quickstart NAME DATABASE_URL ANSWERING_CLI COMMAND...
quickstart() {
  local name=$1 url=$2 cli=$3
  shift 3
  local key="refund-A-1-$name-$$-$RANDOM" log="$WORK/$name.log" t0=$SECONDS
  INLOOP_DATABASE_URL=$url QUICKSTART_KEY=$key "$@" >"$log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local i=0
  until INLOOP_DATABASE_URL=$url "$BIN" tasks list --status pending --key-prefix "$key" --json 2>/dev/null \
      | grep "\"$key\"" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$name: the agent exited before its task was pending"; }
    i=$((i + 1))
    [ $i -lt 600 ] || { cat "$log" >&2; die "$name: no pending task with key $key after 60 s"; }
    sleep 0.1
  done
  INLOOP_DATABASE_URL=$url "$cli" tasks answer --key "$key" --by install-test \
    '{"approved": true, "note": "from the CLI"}' >/dev/null \
    || { cat "$log" >&2; die "$name: $cli tasks answer failed"; }
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 600 ] || { cat "$log" >&2; die "$name: the agent did not exit 60 s after the answer"; }
    sleep 0.1
  done
  wait "$pid" || { cat "$log" >&2; die "$name: the agent failed"; }
  grep -qx 'decision: {"approved":true,"note":"from the CLI"}' "$log" \
    || { cat "$log" >&2; die "$name: the agent did not print the typed decision"; }
  echo "    $name: answered by $(basename "$cli") ($cli), resumed with the decision ($((SECONDS - t0)) s)"
}

backends=("sqlite=sqlite:$WORK/inloop.db")
if [ -n "${INLOOP_TEST_PG_URL:-}" ]; then
  backends+=("postgres=$INLOOP_TEST_PG_URL")
elif [ "${INLOOP_REQUIRE_PG:-}" = 1 ]; then
  die "INLOOP_REQUIRE_PG=1 but INLOOP_TEST_PG_URL is not set"
else
  echo "    PostgreSQL skipped (INLOOP_TEST_PG_URL is not set)"
fi
for backend in "${backends[@]}"; do
  name=${backend%%=*}
  url=${backend#*=}
  say "quickstarts on $name"
  quickstart "python-$name" "$url" "$BIN" "$WORK/venv/bin/python" "$HERE/quickstart.py"
  quickstart "typescript-$name" "$url" "$PY_CLI" node "$WORK/node/quickstart.js"
done

say "Node: without its platform package, inloop names the missing platform"
mv "$WORK/node/node_modules/inloop-linux-x64-gnu" "$WORK/platform-package"
out=$(cd "$WORK/node" && node --input-type=module -e \
  'import { Client } from "inloop"; await new Client({ databaseUrl: "sqlite::memory:" }).list();' 2>&1) \
  && die "the npm package loaded without its platform package"
grep -q 'ConfigError: inloop: no native addon for platform linux-x64-gnu: its platform package inloop-linux-x64-gnu is not installed' <<<"$out" \
  || { printf '%s\n' "$out" >&2; die "the error does not name the missing platform package"; }
echo "    $(grep -o 'ConfigError: .*' <<<"$out" | head -1)"

say "install test passed in $((SECONDS - started)) s"
