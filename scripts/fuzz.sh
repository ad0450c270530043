#!/usr/bin/env bash
# Fuzzes the REST API of a real `inloop serve` from its own OpenAPI document (schemathesis,
# pinned in python/requirements-dev.txt), on SQLite and PostgreSQL: fails on any 5xx or any
# response that the document does not describe (status, content type, headers, body schema).
#
#   scripts/fuzz.sh                 bounded run (30 s per backend, a fixed seed so the README
#                                   test command is repeatable; every defect a seed found is
#                                   fixed and has a regression test in core/tests/hostile.rs)
#   scripts/fuzz.sh --long          long run (FUZZ_SECONDS, default 600 s per backend, a random
#                                   seed; soak)
#   FUZZ_SEED=N scripts/fuzz.sh     replay one seed (printed by every run)
#
# PostgreSQL: INLOOP_TEST_PG_URL when set (test.sh sets it), else a throwaway cluster.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"

seconds=${FUZZ_SECONDS:-30}
if [ "${1:-}" = "--long" ]; then
  seconds=${FUZZ_SECONDS:-600}
else
  FUZZ_SEED=${FUZZ_SEED:-177523012}
fi

cargo build -q -p inloop-core --bin inloop
BIN="$CARGO_TARGET_DIR/$CARGO_BUILD_TARGET/debug/inloop"

if [ -z "${INLOOP_TEST_PG_URL:-}" ]; then
  FUZZ_PGDIR=$(mktemp -d)
  trap 'scripts/pg.sh stop "$FUZZ_PGDIR" >/dev/null 2>&1 || true; rm -rf "$FUZZ_PGDIR"' EXIT
  INLOOP_TEST_PG_URL=$(scripts/pg.sh start "$FUZZ_PGDIR")
fi

python tests/fuzz/fuzz.py --bin "$BIN" --seconds "$seconds" --pg-url "$INLOOP_TEST_PG_URL" \
  ${FUZZ_SEED:+--seed "$FUZZ_SEED"}
