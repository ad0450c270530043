#!/usr/bin/env bash
# Runs the CrewAI adapter's tests (python/tests/test_crewai.py) in their own environment,
# .venv-crewai: crewai 1.15.30 requires pydantic<2.13, openai<3 and mcp<2, which conflict with
# the pins of requirements-dev.txt (see python/requirements-crewai.txt). The native module is
# the one build_python puts in python/inloop/ (same Python), shared through a .pth file.
# Uses INLOOP_TEST_PG_URL if set (scripts/test.sh sets it), else starts a throwaway PostgreSQL.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
build_python

CREW_VENV="$ROOT/.venv-crewai"
if [ ! -x "$CREW_VENV/bin/python" ]; then
  say "creating $CREW_VENV"
  "$PYTHON" -m venv "$CREW_VENV"
fi
stamp="$CREW_VENV/.requirements.sha"
want=$(sha256sum "$ROOT/python/requirements-crewai.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing CrewAI and its pins (pip, about 1 GB)"
  "$CREW_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$ROOT/python/requirements-crewai.txt"
  echo "$want" > "$stamp"
fi
site=$("$CREW_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$ROOT/python" > "$site/inloop-dev.pth"

if [ -z "${INLOOP_TEST_PG_URL:-}" ]; then
  PGDIR=$(mktemp -d)
  trap 'scripts/pg.sh stop "$PGDIR" >/dev/null 2>&1 || true; rm -rf "$PGDIR"' EXIT
  INLOOP_TEST_PG_URL=$(scripts/pg.sh start "$PGDIR")
fi
export INLOOP_TEST_PG_URL INLOOP_REQUIRE_PG=1 INLOOP_REQUIRE_CREWAI=1
say "CrewAI adapter tests (SQLite and PostgreSQL)"
(cd python && HOME="$(mktemp -d)" "$CREW_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_crewai.py "$@")
