#!/usr/bin/env bash
# The main job: builds inloop, then runs the example agent on the embedded SQLite default
# (.inloop/inloop.db here). It waits for a person; answer it from a second terminal with the
# command it prints (`.venv/bin/inloop tasks answer ...`).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
build_python
say "running examples/refund_approval.py (Ctrl-C stops it; the request stays stored)"
exec python examples/refund_approval.py
