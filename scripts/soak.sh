#!/usr/bin/env bash
# The long chaos run: every case of tests/chaos/ at its full count (100 SIGKILLs of agents and
# of `inloop serve`, 1,000 waiters through a PostgreSQL restart, 60 s of 8 SQLite processes,
# 10,000 concurrent agents for 60 s ...) on both backends; prints the figures table that
# RELIABILITY.md records. About 15-20 min on 2 cores. SOAK_FUZZ=1 also runs
# `scripts/fuzz.sh --long` (10 min per backend).
#
#   scripts/soak.sh [--case NAME ...] [--backend sqlite|postgres ...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f "$here/../typescript/dist/test/agent.js" ]; then
  (cd "$here/../typescript" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
fi
INLOOP_REQUIRE_TS=1 "$here/chaos.sh" --long "$@"
if [ "${SOAK_FUZZ:-0}" = "1" ]; then
  "$here/fuzz.sh" --long
fi
