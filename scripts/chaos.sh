#!/usr/bin/env bash
# The chaos suite (tests/chaos/): real process faults against inloop on SQLite and a throwaway
# PostgreSQL of its own: SIGKILLed agents (Python direct and remote, TypeScript) and servers,
# PostgreSQL restarted with `pg_ctl restart -m immediate` under parked waiters, 50 racing
# submitters on two replicas, 8 processes on one SQLite file, many agents under load.
# Every case asserts its guarantee and prints its figures; the table comes last.
#
#   scripts/chaos.sh            fast variant (the README test command runs it; < 3 min)
#   scripts/chaos.sh --long     the full counts (scripts/soak.sh runs this)
#   scripts/chaos.sh --case race --backend sqlite    one case, one backend
#
# The TypeScript agent is typescript/dist/test/agent.js (`cd typescript && npm run build`);
# without it the TypeScript kill case is skipped, unless INLOOP_REQUIRE_TS=1.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
build_python
python tests/chaos/chaos.py "$@"
