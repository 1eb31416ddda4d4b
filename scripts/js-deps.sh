#!/usr/bin/env bash
# Installs tests/js's pinned Node dependencies (npm ci from package-lock.json) when
# node_modules is missing or older than the lock file. Idempotent and quiet.
set -euo pipefail

js=$(cd "$(dirname "$0")/../tests/js" && pwd)
stamp=$js/node_modules/.package-lock.json  # written by npm on every install

if [ -f "$stamp" ] && [ "$stamp" -nt "$js/package-lock.json" ] && [ "$stamp" -nt "$js/package.json" ]; then
  exit 0
fi
(cd "$js" && npm ci --silent --no-audit --no-fund)
