#!/usr/bin/env bash
# Runs the benchmarks behind `make bench` in order and prints a summary of
# bench/results.json and the table of issue 16's goals (bench/goals). Each
# benchmark prints its own table and merges its figures into
# bench/results.json under its own key.
#
# Sizes and durations (defaults match the issue):
#   BENCH_SPEAKERS=50,200,500  fan-out speaker counts
#   BENCH_DURATION=60s         fan-out broadcast length
#   BENCH_RUNS=3               runs per scenario (figures are medians)
#   BENCH_SYNC_SPEAKERS=50     speakers in the sync benchmark
#   BENCH_SYNC_CLIP=15s        sync marker clip length
#   BENCH_SYNC_RUNS=3          sync broadcasts
#   BENCH_UPLINK_OUTAGE=10m    uplink outage before the outbox drain is measured
#   BENCH_RESULTS=bench/results.json
#   BENCH_LONG=1               also the issue 16 long runs: fan-out at 1,000 speakers
#                              (embedded and Mosquitto), the 10-minute sync programme,
#                              idle memory at 5 min, live speech from Chromium
# e.g. a quick CI-like run:
#   BENCH_SPEAKERS=50 BENCH_DURATION=15s BENCH_RUNS=1 BENCH_SYNC_RUNS=1 ./scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="-buildvcs=false -tags=nolibopusfile"

speakers="${BENCH_SPEAKERS:-50,200,500}"
if [ "${BENCH_LONG:-0}" = 1 ] && [ -z "${BENCH_SPEAKERS:-}" ]; then
	speakers=50,200,500,1000
fi
duration="${BENCH_DURATION:-60s}"
runs="${BENCH_RUNS:-3}"
sync_speakers="${BENCH_SYNC_SPEAKERS:-50}"
sync_clip="${BENCH_SYNC_CLIP:-15s}"
sync_runs="${BENCH_SYNC_RUNS:-3}"
results="${BENCH_RESULTS:-bench/results.json}"

status=0
step() {
	echo
	echo "== $*"
	"$@" || { echo "!! failed: $*" >&2; status=1; }
}

step go run ./bench/fanout -speakers "$speakers" -duration "$duration" -runs "$runs" -results "$results"
step go run ./bench/sync -speakers "$sync_speakers" -clip "$sync_clip" -runs "$sync_runs" -results "$results"
# The uplink: 3 NATS nodes, 10 villages; BENCH_UPLINK_OUTAGE (default 10m) is the outage.
step go run ./bench/uplink -runs "$runs" -outage "${BENCH_UPLINK_OUTAGE:-10m}" -results "$results"
# The police camera path across NAT needs root (network namespaces).
if [ "$(id -u)" = 0 ]; then
	step go run ./bench/communecam -runs "$runs" -results "$results"
	step go run ./bench/communecam -runs "$runs" -always-on -key commune_cameras_always_on -results "$results"
else
	echo "== bench/communecam skipped: network namespaces need root"
fi
# The commune: approver's click -> first sample in 5 villages x 20 speakers.
step go run ./bench/commune -villages 5 -speakers 20 -runs "$runs" -results "$results"
# Other benchmarks (camera, schedule, live), owned elsewhere, run when present.
for b in camera schedule live; do
	if [ -d "bench/$b" ]; then
		step go run "./bench/$b" -results "$results"
	fi
done

if [ "${BENCH_LONG:-0}" = 1 ]; then
	step go run ./bench/fanout -broker mosquitto -speakers 1000 -duration 60s -runs "$runs" -results "$results"
	step go run ./bench/sync -speakers 50 -clip 10m -points start,5m,end -runs "$runs" -results "$results"
	step go run ./bench/idle -runs "$runs" -later 5m -results "$results"
	step go run ./bench/live -browser chromium -runs "$runs" -results "$results"
else
	step go run ./bench/idle -runs "$runs" -later 60s -results "$results"
fi

echo
echo "== summary of $results"
go run ./bench/fanout -summary -results "$results" || status=1
# Issue 16's goals in one table: figure, baseline and ratio, target, met or
# not, key and date ("not measured" with its command where a key is missing).
echo
echo "== issue 16 goals"
go run ./bench/goals -results "$results" || status=1
exit $status
