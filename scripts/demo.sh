#!/usr/bin/env bash
# The main job: builds inloop, starts `inloop serve` (the dashboard and the REST API) on the
# embedded SQLite default (.inloop/inloop.db here), then runs the example agent, which asks a
# person to approve a refund and waits. Open the dashboard URL it prints (the first time, the
# setup link creates your admin account), answer the request, and watch the agent resume.
#
#   INLOOP_BIND=0.0.0.0:7070 bash scripts/demo.sh   # listen elsewhere (default 127.0.0.1:7070)
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
build_python
say "building the inloop server (cargo build)"
cargo build -q -p inloop-core --bin inloop
INLOOP="$CARGO_TARGET_DIR/$CARGO_BUILD_TARGET/debug/inloop"

export INLOOP_BIND=${INLOOP_BIND:-127.0.0.1:7070}
log=$(mktemp)
say "starting inloop serve on $INLOOP_BIND (database .inloop/inloop.db)"
"$INLOOP" serve >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q '^dashboard:' "$log" && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; die "inloop serve did not start"; }
  sleep 0.1
done
grep -q '^dashboard:' "$log" || { cat "$log" >&2; die "inloop serve did not start"; }
echo
sed -n '/^dashboard:/,$p' "$log"
if ! grep -q 'setup?token=' "$log"; then
  echo "(sign in with your account; forgot the password? $INLOOP user reset-password NAME)"
fi
echo
say "running examples/refund_approval.py (Ctrl-C stops it; the request stays stored)"
python examples/refund_approval.py
