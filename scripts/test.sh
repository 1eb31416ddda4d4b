#!/usr/bin/env bash
# Every test: Rust unit and end-to-end tests (SQLite and PostgreSQL stores, the reference
# JavaScript client), then the Kotlin tests of the generated bindings on the JVM.
# Installs what the tests need (Node packages, JNA, JUnit, kotlinc) on first run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/services.sh
scripts/js-deps.sh
cargo test --workspace --locked
scripts/kotlin-test.sh
echo "all tests passed"
