#!/usr/bin/env bash
# The main job on the embedded default: starts sotong-server (SQLite under ./sotong-data),
# then two devices of one citizen, driven through the `sotong` terminal client, draft a
# proposal, go offline, edit it concurrently and merge. It also creates staff accounts for
# the web console (an admin, an agency officer, a dispatcher) with printed development
# passwords, and prints the console's URL. The server keeps serving afterwards (Ctrl-C stops
# it); pass --once to stop after the demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
once=false
[ "${1:-}" = "--once" ] && once=true

profile=release
[ "${SOTONG_DEMO_DEBUG:-}" = 1 ] && profile=debug # a quicker build while developing the demo
if [ "$profile" = release ]; then
  cargo build -q --release -p sotong-server -p sotong-cli
else
  cargo build -q -p sotong-server -p sotong-cli
fi
bin=${CARGO_TARGET_DIR:-$root/target}/$profile
work=$(mktemp -d)
server_pid=
live_pid=
sos_pid=
cleanup() {
  if [ -n "$sos_pid" ]; then kill "$sos_pid" 2>/dev/null || true; wait "$sos_pid" 2>/dev/null || true; fi
  if [ -n "$live_pid" ]; then kill "$live_pid" 2>/dev/null || true; wait "$live_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

bind=${SOTONG_BIND:-127.0.0.1:0}
"$bin/sotong-server" --dev --data-dir "${SOTONG_DATA_DIR:-./sotong-data}" --bind "$bind" \
  --port-file "$work/addr" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
[ -s "$work/addr" ] || { cat "$work/server.log" >&2; exit 1; }
server=http://$(tr -d '[:space:]' <"$work/addr")
echo "== sotong-server listening on $server (data: ${SOTONG_DATA_DIR:-./sotong-data})"
console="http://localhost:${server##*:}/console/"

echo "== staff accounts for the console (development passwords; a rerun gives new ones)"
staff_member() { # username, shown name, role, scope (may be empty)
  local user=$1 name=$2 role=$3 scope=$4 pw
  pw="dev-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')"
  local store=(--data-dir "${SOTONG_DATA_DIR:-./sotong-data}")
  if "$bin/sotong-server" staff list "${store[@]}" | awk 'NR > 1 {print $1}' | grep -qx "$user"; then
    printf '%s\n' "$pw" | "$bin/sotong-server" staff reset-password "$user" "${store[@]}" >/dev/null
  else
    local grant=(--role "$role")
    [ -n "$scope" ] && grant+=(--scope "$scope")
    printf '%s\n' "$pw" | "$bin/sotong-server" staff add "$user" --name "$name" "${grant[@]}" "${store[@]}" >/dev/null
  fi
  printf '   %-13s %-28s password: %s\n' "$user" "$role${scope:+ of $scope}" "$pw"
  printf '%s' "$pw" >"$work/password.$user"
}
staff_member demo.admin "관리자 (demo)" admin ""
staff_member demo.officer "김담당 (demo)" agency_officer MOLIT
staff_member demo.dispatch "이상황 (demo)" dispatcher seoul
echo "== staff console: $console (sign in with a name and password above)"


phone="+8210$(printf '%08d' $((RANDOM * 32768 + RANDOM)))"
sotong() { "$bin/sotong" --server "$server" "$@"; }
code_for() {
  local last4=${phone: -4} code=
  for _ in $(seq 1 50); do
    code=$(grep -o "one-time code for \*\*\*$last4: [0-9]*" "$work/server.log" | tail -n 1 | awk '{print $NF}')
    [ -n "$code" ] && break
    sleep 0.1
  done
  echo "$code"
}
register() {
  local home=$1 before
  before=$(grep -c "one-time code" "$work/server.log" || true)
  sotong --home "$home" register --phone "$phone" >/dev/null
  for _ in $(seq 1 50); do
    [ "$(grep -c "one-time code" "$work/server.log" || true)" -gt "$before" ] && break
    sleep 0.1
  done
  sotong --home "$home" register --phone "$phone" --code "$(code_for)" --device-name "$2"
}

a=$work/phone-a b=$work/phone-b
echo "== two devices of one citizen register with one-time codes"
register "$a" "phone A"
register "$b" "tablet B"

echo "== A drafts a proposal and syncs; B syncs and receives it"
id=$(sotong --home "$a" proposal new --title "버스 배차 간격" --body "출퇴근 시간에 배차 간격을 줄여 주세요." --category transport)
sotong --home "$a" sync
sotong --home "$b" sync

echo "== both offline: A edits the body, B edits the title and the body at another place"
sotong --home "$a" proposal edit "$id" --insert-body 0 "[A] " >/dev/null
sotong --home "$b" proposal edit "$id" --insert-title 0 "[B] " >/dev/null
len=$(sotong --home "$b" proposal show "$id" | tail -n 1 | python3 -c 'import sys; print(len(sys.stdin.read().rstrip("\n")))')
sotong --home "$b" proposal edit "$id" --insert-body "$len" " [B]" >/dev/null

echo "== both sync"
sotong --home "$a" sync
sotong --home "$b" sync
sotong --home "$a" sync

echo "== device A:"; sotong --home "$a" proposal show "$id"
echo "== device B:"; sotong --home "$b" proposal show "$id"
if [ "$(sotong --home "$a" proposal show "$id")" = "$(sotong --home "$b" proposal show "$id")" ]; then
  echo "== merged: both devices hold the same draft with all three edits"
else
  echo "== the devices disagree" >&2; exit 1
fi

echo "== limits are data: a body of 30,001 characters is refused before anything is saved"
long=$(python3 -c 'print("가" * 30001)')
if out=$(sotong --home "$a" proposal new --title "too long" --body "$long" --category transport 2>&1); then
  echo "== the over-long draft was accepted" >&2; exit 1
fi
echo "   $out"

wait_for() { # file, pattern, how many lines must match
  for _ in $(seq 1 150); do
    [ "$(grep -c -- "$2" "$1" 2>/dev/null || true)" -ge "$3" ] && return 0
    sleep 0.1
  done
  echo "== timed out waiting for \"$2\" in $1" >&2; return 1
}
echo "== B goes live: it stays connected, receives edits at once and reconnects by itself"
"$bin/sotong" --server "$server" --home "$b" live >"$work/live.out" 2>"$work/live.err" &
live_pid=$!
wait_for "$work/live.err" "^online" 1
sotong --home "$a" proposal edit "$id" --insert-title 0 "[live] " >/dev/null
sotong --home "$a" sync >/dev/null
wait_for "$work/live.out" "changed $id" 1
echo "== B received A's edit without syncing:"; sotong --home "$b" proposal show "$id" | sed -n 1p
echo "== the server restarts; B backs off, then comes back online by itself"
addr=$(tr -d '[:space:]' <"$work/addr")
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
"$bin/sotong-server" --dev --data-dir "${SOTONG_DATA_DIR:-./sotong-data}" --bind "$addr" \
  >>"$work/server.log" 2>&1 &
server_pid=$!
wait_for "$work/live.err" "^offline" 1
wait_for "$work/live.err" "^online" 2
sed 's/^/   B: /' "$work/live.err"
sotong --home "$a" proposal edit "$id" --insert-title 0 "[after restart] " >/dev/null
sotong --home "$a" sync >/dev/null
wait_for "$work/live.out" "changed $id" 2
echo "== B holds A's edit made after the restart:"; sotong --home "$b" proposal show "$id" | sed -n 1p
kill "$live_pid" 2>/dev/null || true; wait "$live_pid" 2>/dev/null || true
live_pid=

echo "== SOS silent call: phone A sets its PINs and triggers an incident in Seoul"
sotong --home "$a" sos pins --set 2468 --duress 1357 >/dev/null
incident=$(sotong --home "$a" sos trigger --how power-key)
echo "   incident $incident; fixes are written to the phone's SQLite file before anything is sent"
sotong --home "$a" sos fix --lat 37.5665 --lon 126.9780 --accuracy 12 --method gps --battery 64 >/dev/null
sotong --home "$a" sos fix --lat 37.5668 --lon 126.9784 --accuracy 9 --method gps --battery 63 >/dev/null
"$bin/sotong" --server "$server" --home "$a" sos run >"$work/sos.out" 2>"$work/sos.err" &
sos_pid=$!
wait_for "$work/sos.out" "^received" 1
echo "== the dispatcher (demo.dispatch, Seoul) signs in with a bearer token and reads the live feed"
token=$(jq -n --arg u demo.dispatch --rawfile p "$work/password.demo.dispatch" '{username: $u, password: $p}' \
  | curl -sf -H 'content-type: application/json' --data-binary @- "$server/v1/staff/login" | jq -r .token)
dispatch() { # method, path, [json body]
  curl -sf -X "$1" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    ${3:+--data-binary "$3"} "$server$2"
}
curl -sN --max-time 2 -H "authorization: Bearer $token" "$server/v1/dispatch/feed" 2>/dev/null \
  | python3 -c '
import json, sys
kind = None
for line in sys.stdin:
    if line.startswith("event:"):
        kind = line[6:].strip()
    elif line.startswith("data:"):
        ev = json.loads(line[5:])
        if ev["incident"] == sys.argv[1]:
            region, data = ev["region"], json.dumps(ev["data"], ensure_ascii=False)
            print(f"   feed: {kind:<8} region={region} {data[:110]}")
' "$incident" || true
echo "== dispatch acknowledges and writes to the person; the phone gets both silently"
dispatch POST "/v1/dispatch/incidents/$incident/acknowledge" >/dev/null
dispatch POST "/v1/dispatch/incidents/$incident/message" '{"text":"경찰이 가고 있습니다. 말하기 어려우면 버튼으로 답하세요."}' >/dev/null
wait_for "$work/sos.out" "^message:" 1
sed 's/^/   phone A: /' "$work/sos.out"
echo "== the person answers with one tap; dispatch assigns a unit, then closes the incident"
sotong --home "$a" sos reply --cant-talk >/dev/null
dispatch POST "/v1/dispatch/incidents/$incident/assign" '{"unit":"종로 112-3"}' >/dev/null
wait_for "$work/sos.out" "^unit assigned" 1
dispatch POST "/v1/dispatch/incidents/$incident/close" '{"outcome":"assisted"}' >/dev/null
wait "$sos_pid" 2>/dev/null || true
sos_pid=
echo "== what the phone shows at the end:"; sotong --home "$a" sos status | sed 's/^/   /'
echo "== the dispatcher's view of the incident (every view and action is in the audit log):"
dispatch GET "/v1/dispatch/incidents/$incident" \
  | jq -r '"   region \(.incident.region), phase \(.incident.phase), unit \(.incident.unit), outcome \(.incident.outcome), \(.trail | length) fixes, \(.messages | length) messages"'
echo "== the person leaves feedback once the incident is closed; the phone sends it"
sotong --home "$a" sos feedback --rating 5 --felt-safe yes --comment "빨리 와 주셔서 고맙습니다" >/dev/null
sotong --home "$a" sos run >/dev/null 2>&1
echo "== the admin's SOS summary by region and month (also on the console: /console/sos/summary):"
admin_token=$(jq -n --arg u demo.admin --rawfile p "$work/password.demo.admin" '{username: $u, password: $p}' \
  | curl -sf -H 'content-type: application/json' --data-binary @- "$server/v1/staff/login" | jq -r .token)
curl -sf -H "authorization: Bearer $admin_token" "$server/v1/admin/sos/summary" | jq -c '.rows[]?' | sed 's/^/   /'
echo "== exported as PIDF-LO for police systems (RFC 4119 / 5491):"
dispatch GET "/v1/dispatch/incidents/$incident/pidf-lo" | head -c 400 | sed 's/^/   /'; echo

if ! $once; then
  echo "== server still running at $server, staff console at $console (Ctrl-C to stop)"
  wait "$server_pid"
fi
