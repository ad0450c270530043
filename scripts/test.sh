#!/usr/bin/env bash
# Runs every test: lint, the Rust conformance suite on SQLite and a throwaway PostgreSQL, the
# TypeScript and Python suites on both (plus cross-language tests between them), and the
# dashboard in headless Chromium. Installs what it needs (pip into .venv, npm ci into
# typescript/ and tests/browser/, Rust crates via cargo, PostgreSQL 15 and Chromium via apt).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

say "lint: cargo fmt, clippy, ruff"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
(cd python && ruff check --quiet . && ruff format --check --quiet .)

build_python

say "TypeScript: npm ci, build the addon (napi) and the package (tsc --strict)"
command -v node >/dev/null || die "node (20 or newer) is required for the TypeScript package"
(cd typescript && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
say "TypeScript: the addon's generated index.d.ts matches the committed one"
git diff --exit-code -- typescript/native/index.d.ts \
  || die "typescript/native/index.d.ts drifted from the Rust addon: commit the regenerated file"

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$PG_BIN/initdb" ]; then
  say "installing the PostgreSQL 15 server (apt)"
  [ "$(id -u)" = 0 ] || die "PostgreSQL 15 is missing at $PG_BIN; install Debian's postgresql-15 (needs root)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

say "starting a throwaway PostgreSQL"
PGDIR=$(mktemp -d)
trap 'scripts/pg.sh stop "$PGDIR" >/dev/null 2>&1 || true; rm -rf "$PGDIR"' EXIT
INLOOP_TEST_PG_URL=$(scripts/pg.sh start "$PGDIR")
export INLOOP_TEST_PG_URL INLOOP_REQUIRE_PG=1

say "Rust tests (core conformance on SQLite and PostgreSQL)"
cargo test -p inloop-core --quiet

say "TypeScript tests (SQLite and PostgreSQL)"
(cd typescript && npm test --silent)

say "Python tests (SQLite and PostgreSQL, and cross-language with TypeScript)"
export INLOOP_REQUIRE_TS=1
(cd python && python -m pytest -q)

say "Chaos (tests/chaos: SIGKILLs, a PostgreSQL stop, racing replicas, load; fast variant)"
python tests/chaos/chaos.py

say "CrewAI adapter tests (their own environment, .venv-crewai: crewai's pins conflict with ours)"
bash scripts/test-crewai.sh

say "Release artifacts (scripts/release.sh --dev: the layout, from the test build) and the no-toolchain install test"
scripts/release.sh --dev --out "$CARGO_TARGET_DIR/inloop-dist-dev"
tests/release/install.sh "$CARGO_TARGET_DIR/inloop-dist-dev"

say "REST API fuzzing (schemathesis from the OpenAPI document, SQLite and PostgreSQL)"
scripts/fuzz.sh

say "Browser tests (the dashboard in headless Chromium)"
CHROMIUM=${INLOOP_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  say "installing Chromium (apt)"
  [ "$(id -u)" = 0 ] || die "Chromium is missing at $CHROMIUM; install Debian's chromium (needs root)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
cargo build -q -p inloop-core --bin inloop
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error \
  && INLOOP_BIN="$CARGO_TARGET_DIR/$CARGO_BUILD_TARGET/debug/inloop" INLOOP_CHROMIUM="$CHROMIUM" npm test --silent)
say "screenshots of the dashboard: tests/browser/artifacts/"
