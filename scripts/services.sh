#!/usr/bin/env bash
# Makes sure the local PostgreSQL the tests use is up (127.0.0.1:5432, trust auth). On this
# project's machines it is started before a session; this starts it again if it stopped.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if pg_up; then exit 0; fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
fi
for _ in $(seq 1 50); do
  if pg_up; then exit 0; fi
  sleep 0.2
done
echo "services: PostgreSQL is not reachable on 127.0.0.1:5432; install and start it (see README)" >&2
exit 1
