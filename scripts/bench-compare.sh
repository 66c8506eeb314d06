#!/bin/sh
# bench-compare.sh REV: measures loalangd built from REV ("before") beside
# the working tree's ("after") in the same runs of bench/fanout and
# bench/camera, so that a refactor is checked against the figures it must
# keep (issue 12: within 5%) on the same machine at the same moment.
#
#   ./scripts/bench-compare.sh 7dd4454            # defaults below
#   BENCH_SPEAKERS=200 BENCH_DURATION=30s BENCH_RUNS=3 ./scripts/bench-compare.sh HEAD~5
set -eu
rev=${1:?usage: bench-compare.sh REV}
export GOFLAGS="${GOFLAGS:--buildvcs=false -tags=nolibopusfile}"
results=${BENCH_RESULTS:-bench/results.json}
work=$(mktemp -d /tmp/loalang-bench-compare-XXXXXX)
trap 'git worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT INT TERM

git worktree add --detach "$work/src" "$rev" >/dev/null
(cd "$work/src" && go build -o "$work/loalangd-before" ./cmd/loalangd)
go build -o "$work/loalangd-after" ./cmd/loalangd
echo "before: $(git rev-parse --short "$rev")  after: working tree at $(git rev-parse --short HEAD)"

go run ./bench/fanout -speakers "${BENCH_SPEAKERS:-200}" -duration "${BENCH_DURATION:-30s}" -runs "${BENCH_RUNS:-3}" \
	-loalangd "$work/loalangd-after" -before "$work/loalangd-before" -results "$results"
if [ "${BENCH_CAMERA:-1}" = 1 ]; then
	go run ./bench/camera -runs "${BENCH_RUNS:-3}" -lan=false -inprocess=false \
		-loalangd "$work/loalangd-after" -before "$work/loalangd-before" -results "$results"
fi
