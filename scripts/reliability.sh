#!/usr/bin/env bash
# Runs the reliability suite behind `make reliability`: every test named
# TestReliability* in every package, in its long form
# (LOALANG_RELIABILITY=full), with the race detector, within 15 minutes.
# Each test prints its figures and can fail. `make test` runs the same
# tests in their light form.
#
# Storage (store/, daemon/): the integrity check's cost at 10k/100k/1M
# records, the damage matrix against the real binary, 30 rounds of kill -9
# during broadcasts, schedule edits, uploads and device churn, and a full
# disk on a real tmpfs (needs root to mount; skipped with a message
# otherwise).
#
# Lifecycle (daemon/): broker restarts mid-broadcast on both brokers, slow
# peers (speaker, WHEP viewer, relay board), network impairment through an
# in-process proxy, clock steps through the daemon, and a 10-minute soak of
# the real binary.
#
# RELIABILITY_RUN narrows the run with a -run pattern, e.g.
#   RELIABILITY_RUN='Reliability(Damage|CrashLoop)' ./scripts/reliability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="-buildvcs=false -tags=nolibopusfile"
export LOALANG_RELIABILITY=full
run="${RELIABILITY_RUN:-Reliability}"
# The suite is meant to take at most 15 minutes; the timeout leaves room
# for a loaded machine, and the elapsed time is printed to check the goal.
go test -race -count=1 -run "$run" -timeout 25m -v ./... 2>&1 | grep -v -e '^=== RUN' -e '^=== PAUSE' -e '^=== CONT' -e 'level=' -e 'no tests to run' -e '^PASS$' -e '^?'
echo "reliability suite: ${SECONDS} s, load average $(cut -d' ' -f1-3 /proc/loadavg)"
