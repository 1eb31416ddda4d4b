#!/usr/bin/env bash
# Every test: Rust unit and end-to-end tests (SQLite and PostgreSQL stores, the reference
# JavaScript client, the staff console in headless Chromium), then the Kotlin tests of the
# generated bindings on the JVM. Installs what the tests need (Node packages, Chromium, JNA,
# JUnit, kotlinc) on first run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/services.sh
scripts/js-deps.sh
scripts/console-deps.sh
cargo test --workspace --locked
scripts/kotlin-test.sh
echo "all tests passed"
