#!/usr/bin/env bash
# What the console's browser tests need: Debian's Chromium (never a browser download), a
# Korean font so Hangul labels render in the screenshots, and tests/console's pinned
# playwright-core (npm ci from package-lock.json). Idempotent and quiet once installed.
set -euo pipefail

console=$(cd "$(dirname "$0")/../tests/console" && pwd)

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Without a CJK font Chromium draws Hangul as empty boxes.
fc-list :lang=ko 2>/dev/null | grep -q . || missing+=(fonts-nanum)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # Refresh the package lists only when they do not know the packages yet.
  for p in "${missing[@]}"; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      $sudo apt-get update -qq
      break
    fi
  done
  echo "installing ${missing[*]} (apt-get)" >&2
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=$console/node_modules/.package-lock.json  # written by npm on every install
if [ -f "$stamp" ] && [ "$stamp" -nt "$console/package-lock.json" ] && [ "$stamp" -nt "$console/package.json" ]; then
  exit 0
fi
(cd "$console" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
