#!/usr/bin/env bash
# The whole benchmark in one command: installs bench/js's pinned Node packages (the reference
# automerge-repo sync server and the JS client workload) when missing or stale, makes sure
# PostgreSQL answers (instance-to-instance phase), builds the release server and bench, and
# runs every phase. Arguments go to sotong-bench (`--quick`, `--only N`).
# Not part of CI: scripts/test.sh does not run it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

js=$root/bench/js
stamp=$js/node_modules/.package-lock.json  # written by npm on every install
if ! { [ -f "$stamp" ] && [ "$stamp" -nt "$js/package-lock.json" ] && [ "$stamp" -nt "$js/package.json" ]; }; then
  (cd "$js" && npm ci --silent --no-audit --no-fund)
fi
scripts/services.sh
# Two builds, not one: built together, the server would get the bench's dependency features,
# and the bench must measure the server exactly as it ships.
cargo build --release --locked -p sotong-server
cargo build --release --locked -p sotong-bench
exec target/release/sotong-bench "$@"
