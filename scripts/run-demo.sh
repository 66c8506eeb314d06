#!/usr/bin/env bash
# The demo village: loalangd on configs/demo.yaml with its embedded broker,
# and firmware-sim simulating every device in the provisioning bundle.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${CONFIG:-configs/demo.yaml}
data=${DATA_DIR:-var/demo}
mkdir -p "$data"
rm -f "$data/ready.json"

pids=()
stop() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# HTTP on localhost; HTTPS on the LAN address too, so phones get a secure
# context (the microphone needs one). The certificate is self-signed and
# kept in the data dir; its fingerprint is in the log.
lan=$(hostname -I 2>/dev/null | awk '{print $1}')
if [ -n "$lan" ] && [ -z "${LOALANG_HTTP_TLS_ADDR:-}" ]; then
	export LOALANG_HTTP_TLS_ADDR="$lan:8443"
fi
./bin/loalangd --config "$config" --data-dir "$data" &
pids+=($!)
for _ in $(seq 1 300); do
	[ -f "$data/ready.json" ] && break
	kill -0 "${pids[0]}" 2>/dev/null || { echo "loalangd exited; see the log above" >&2; exit 1; }
	sleep 0.1
done
[ -f "$data/ready.json" ] || { echo "loalangd did not become ready" >&2; exit 1; }

./bin/firmware-sim --provisioning "$data/provisioning.json" &
pids+=($!)

http=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' "$data/ready.json")
https=$(sed -n 's/.*"https":"\([^"]*\)".*/\1/p' "$data/ready.json")
cat <<MSG

  loalang demo is running.
    Web app and API:  http://$http/
    On the LAN:       ${https:+https://$https/ (self-signed; fingerprint in the log above)}
    Sign in as:       admin
    Password file:    $(realpath "$data")/initial-admin-password
  Try:  ./bin/loalang --server http://$http login --password-file $data/initial-admin-password
        ./bin/loalang devices
  Ctrl-C stops the daemon and the simulated village.

MSG
wait -n "${pids[@]}"
