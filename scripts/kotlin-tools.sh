#!/usr/bin/env bash
# Installs, once, what scripts/kotlin-test.sh needs: Java 17, JNA and JUnit 4 from Debian, and
# the Kotlin compiler from npm (unpacked under .tools/kotlin, which git ignores).
# Prints one line: the Kotlin home (its bin/kotlinc and lib/*.jar).
set -euo pipefail

KOTLIN_VERSION=2.4.20
root=$(cd "$(dirname "$0")/.." && pwd)
kotlin_home=$root/.tools/kotlin/$KOTLIN_VERSION

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
[ -f /usr/share/java/jna.jar ] || missing+=(libjna-java)
[ -f /usr/share/java/junit4.jar ] || missing+=(junit4)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  apt_log=$(mktemp)
  if ! { "${sudo[@]}" apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    rm -f "$apt_log"
    echo "kotlin-tools: could not install ${missing[*]}" >&2
    exit 1
  fi
  rm -f "$apt_log"
fi

if [ ! -x "$kotlin_home/bin/kotlinc" ]; then
  unpack=$(mktemp -d)
  trap 'rm -rf "$unpack"' EXIT
  (cd "$unpack" && npm pack "kotlin-compiler@$KOTLIN_VERSION" --silent >/dev/null \
    && tar xzf "kotlin-compiler-$KOTLIN_VERSION.tgz")
  mkdir -p "$(dirname "$kotlin_home")"
  rm -rf "$kotlin_home"
  mv "$unpack/package" "$kotlin_home"
fi

echo "$kotlin_home"
