#!/usr/bin/env bash
# The demo village: loalangd on configs/demo.yaml with its embedded broker,
# and firmware-sim simulating every device in the provisioning bundle.
# Ctrl-C stops both.
#
# A port the demo wants (8080 HTTP, 1883 MQTT, 8554/8555 the simulated
# cameras' RTSP, 8189/udp WebRTC, 8443 HTTPS) that another program holds is
# named with that program, and the demo takes the next free port instead:
# it runs on a copy of the config, <data>/demo.run.yaml. A simulated device
# that fails is reported by firmware-sim and the others run on; if
# firmware-sim stops altogether the daemon stays up.
#
# Environment: CONFIG (default configs/demo.yaml), DATA_DIR (var/demo),
# BIN_DIR (./bin).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${CONFIG:-configs/demo.yaml}
data=${DATA_DIR:-var/demo}
bin=${BIN_DIR:-./bin}
mkdir -p "$data"
data=$(realpath "$data")
rm -f "$data/ready.json"

pids=()
stop() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# listener PROTO PORT prints the socket inode of whatever listens on PORT
# (any address, IPv4 or IPv6), from /proc/net: ss filters need netlink
# support that some containers lack.
listener() {
	local state=0A # TCP_LISTEN
	[ "$1" = udp ] && state=07
	awk -v port="$(printf ':%04X' "$2")" -v state=$state \
		'FNR > 1 && substr($2, length($2) - 4) == port && $4 == state { print $10; exit }' \
		"/proc/net/$1" "/proc/net/${1}6" 2>/dev/null
}
busy() { [ -n "$(listener "$1" "$2")" ]; }
# holder PROTO PORT names the program listening on PORT, where /proc lets
# us see it.
holder() {
	local inode fd pid
	inode=$(listener "$1" "$2")
	fd=$(find /proc/[0-9]*/fd -lname "socket:\[$inode\]" 2>/dev/null | head -1)
	pid=${fd#/proc/}
	pid=${pid%%/*}
	if [ -n "$pid" ] && [ -r "/proc/$pid/comm" ]; then
		echo "$(cat "/proc/$pid/comm") (pid $pid)"
	else
		echo "another program"
	fi
}
taken=" "
moved=""
# pick PROTO PORT WHAT sets picked to PORT if it is free, else to the first
# free port from PORT+10000 up, and notes who holds PORT in $moved. (It
# runs in this shell, not in $(...), so that taken remembers every pick.)
pick() {
	picked=$2
	if busy "$1" "$2" || [[ $taken == *" $2 "* ]]; then
		local who="another part of the demo"
		busy "$1" "$2" && who=$(holder "$1" "$2")
		picked=$(($2 + 10000))
		while busy "$1" "$picked" || [[ $taken == *" $picked "* ]]; do picked=$((picked + 1)); done
		moved+="  port $2/$1 ($3) is held by $who; the demo uses $picked instead"$'\n'
	fi
	taken+="$picked "
}

# The run config: the demo config with busy ports moved and the relay
# board's link in the data dir, so that firmware-sim finds it from anywhere.
run_config="$data/demo.run.yaml"
cp "$config" "$run_config"
for p in $(grep -o '127\.0\.0\.1:[0-9]\+' "$config" | cut -d: -f2 | awk '!seen[$0]++'); do
	line=$(grep -m1 "127\.0\.0\.1:$p" "$config")
	case $line in
	*rtsp://*) what="RTSP, simulated camera $(echo "$line" | sed -n 's#.*/\([^/]*\)$#\1#p')" ;;
	*listen:*) what="MQTT, the embedded broker" ;;
	*addr:*) what="HTTP, the web app and API" ;;
	*) what="demo" ;;
	esac
	pick tcp "$p" "$what"
	[ "$picked" = "$p" ] || sed -i "s/127\.0\.0\.1:$p\b/127.0.0.1:$picked/g" "$run_config"
done
udp=$(sed -n 's/^ *udp_port: *\([0-9]\+\).*/\1/p' "$config" | head -1)
if [ -n "$udp" ] && [ -z "${LOALANG_WEBRTC_UDP_PORT:-}" ]; then
	pick udp "$udp" "WebRTC media"
	[ "$picked" = "$udp" ] || sed -i "s/^\( *udp_port: *\)$udp\b/\1$picked/" "$run_config"
fi
sed -i "s#^\( *port: *\)var/demo/#\1$data/#" "$run_config"

# HTTP on localhost; HTTPS on the LAN address too, so phones get a secure
# context (the microphone needs one). The certificate is self-signed and
# kept in the data dir; its fingerprint is in the log.
lan=$(hostname -I 2>/dev/null | awk '{print $1}')
if [ -n "$lan" ] && [ -z "${LOALANG_HTTP_TLS_ADDR:-}" ]; then
	pick tcp 8443 "HTTPS on the LAN"
	export LOALANG_HTTP_TLS_ADDR="$lan:$picked"
fi
if [ -n "$moved" ]; then
	printf "Some of the demo's ports are busy:\n%s" "$moved" >&2
fi

"$bin/loalangd" --config "$run_config" --data-dir "$data" &
daemon=$!
pids+=("$daemon")
for _ in $(seq 1 300); do
	[ -f "$data/ready.json" ] && break
	kill -0 "$daemon" 2>/dev/null || { echo "loalangd exited; see the log above" >&2; exit 1; }
	sleep 0.1
done
[ -f "$data/ready.json" ] || { echo "loalangd did not become ready" >&2; exit 1; }

"$bin/firmware-sim" --provisioning "$data/provisioning.json" &
sim=$!
pids+=("$sim")

http=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' "$data/ready.json")
https=$(sed -n 's/.*"https":"\([^"]*\)".*/\1/p' "$data/ready.json")
cat <<MSG

  loalang demo is running.
    Web app and API:  http://$http/
    On the LAN:       ${https:+https://$https/ (self-signed; fingerprint in the log above)}
    Sign in as:       admin
    Password file:    $data/initial-admin-password
  Try:  $bin/loalang --server http://$http login --password-file $data/initial-admin-password
        $bin/loalang devices
  Ctrl-C stops the daemon and the simulated village.

MSG
# The daemon is the demo: if firmware-sim stops (every simulated device
# failed), say so and keep serving the web app.
if wait -n "$daemon" "$sim"; then status=0; else status=$?; fi
if kill -0 "$daemon" 2>/dev/null; then
	echo "firmware-sim stopped (status $status; its log above says why); loalangd runs on at http://$http/" >&2
	wait "$daemon"
fi
