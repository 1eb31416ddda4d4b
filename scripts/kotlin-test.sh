#!/usr/bin/env bash
# Runs the Kotlin tests of the generated sotong-ffi bindings (bindings/kotlin/src/test/kotlin)
# on the JVM against a real sotong-server on a free loopback port. Exit code = test result.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}

kotlin_home=$("$root/scripts/kotlin-tools.sh")
klib=$kotlin_home/lib

cargo build -q -p sotong-ffi -p sotong-server -p sotong-uniffi-bindgen

bindings=$root/build/kotlin-bindings
rm -rf "$bindings"
"$target/debug/uniffi-bindgen" generate --library "$target/debug/libsotong_ffi.so" \
  -l kotlin -o "$bindings" --no-format

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/server-data"
server_log=$work/server.log
RUST_LOG=${RUST_LOG:-info} "$target/debug/sotong-server" --dev --bind 127.0.0.1:0 \
  --data-dir "$work/server-data" --port-file "$work/addr" >"$server_log" 2>&1 &
server_pid=$!

addr=
for _ in $(seq 1 300); do
  if [ -s "$work/addr" ]; then
    addr=$(tr -d '[:space:]' <"$work/addr")
    [ -n "$addr" ] && break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "kotlin-test: sotong-server exited early:" >&2
    cat "$server_log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "kotlin-test: sotong-server wrote no address to its port file within 30s" >&2
  cat "$server_log" >&2
  exit 1
fi
case $addr in
  http://* | https://*) server_url=$addr ;;
  *) server_url=http://$addr ;;
esac

classpath=/usr/share/java/jna.jar:/usr/share/java/junit4.jar:/usr/share/java/hamcrest.jar
classpath=$classpath:$klib/kotlin-stdlib.jar:$klib/kotlin-test.jar:$klib/kotlin-test-junit.jar
classpath=$classpath:$klib/kotlinx-coroutines-core-jvm.jar

mapfile -t sources < <(find "$bindings" bindings/kotlin/src/test/kotlin -name '*.kt' | sort)
tests=()
mapfile -t test_files < <(find bindings/kotlin/src/test/kotlin -name '*Test.kt' | sort)
for f in "${test_files[@]}"; do
  package=$(sed -n 's/^package[[:space:]]\+\([A-Za-z0-9_.]\+\).*/\1/p' "$f" | head -n 1)
  tests+=("${package:+$package.}$(basename "$f" .kt)")
done

"$kotlin_home/bin/kotlinc" -jvm-target 17 -nowarn -cp "$classpath" "${sources[@]}" \
  -d "$work/classes"

status=0
SOTONG_SERVER_URL=$server_url SOTONG_SERVER_LOG=$server_log \
  java -cp "$work/classes:$classpath" -Djna.library.path="$target/debug" \
  org.junit.runner.JUnitCore "${tests[@]}" || status=$?

if [ "$status" -ne 0 ]; then
  echo "kotlin-test: tests failed; last lines of the server log:" >&2
  tail -n 40 "$server_log" >&2
fi
exit "$status"
