#!/usr/bin/env bash
# make-upgrade-fixture.sh BIN OUT: writes the data a release leaves behind,
# for TestUpgradeOpensPreviousRelease. BIN is the previous release's
# loalangd; OUT a new directory. It starts BIN on the demo config with :0
# ports, adds a user, a media item, a schedule and a camera through the API,
# stops it with SIGTERM and keeps loalang.db, provisioning.json, the media
# file and the (fixture-only) admin password. Needs curl, sox and python3.
set -euo pipefail
bin=$1 out=$2
cd "$(dirname "$0")/../../.."
mkdir -p "$out"
LOALANG_WEBRTC_UDP_PORT=0 "$bin" --config configs/demo.yaml --data-dir "$out" --http 127.0.0.1:0 --mqtt 127.0.0.1:0 2>"$out.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -f "$out/ready.json" ] && break; sleep 0.1; done
h=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' "$out/ready.json")
tok=$(curl -sf -X POST "http://$h/api/v1/login" -d "{\"username\":\"admin\",\"password\":\"$(cat "$out/initial-admin-password")\"}" |
	python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
api() { curl -sf -H "Authorization: Bearer $tok" "$@"; echo; }
api -X POST "http://$h/api/v1/users" -d '{"username":"truongthon","password":"fixture-pass-123456","role":"head"}'
api -X POST "http://$h/api/v1/users" -d '{"username":"congan","password":"fixture-pass-654321","role":"police","cameras":["cam-01"]}'
sox -n -r 16000 -c 1 "$out.wav" synth 0.5 sine 1000
media=$(api -F "file=@$out.wav" "http://$h/api/v1/media" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
api -X POST "http://$h/api/v1/schedules" -d "{\"name\":\"Bản tin sáng\",\"rrule\":\"FREQ=DAILY;BYHOUR=6;BYMINUTE=30\",\"zones\":[\"xom-dong\",\"cho\"],\"source\":{\"kind\":\"media\",\"media_id\":\"$media\"},\"priority\":\"normal\",\"volume\":80}"
api -X POST "http://$h/api/v1/cameras" -d '{"id":"cam-03","name":"Đình làng","url":"rtsp://127.0.0.1:8556/cam-03","username":"u","password":"fixture-camera-secret"}'
kill -TERM $pid
wait $pid || true
rm -rf "$out/backups" "$out/archive" "$out/ready.json" "$out.wav" "$out.log"
