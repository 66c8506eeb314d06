# loalang: `make run` starts the demo village, `make test` installs what is
# missing and runs vet and the race-enabled tests. Both work on a fresh
# Debian 12 as root.

GO ?= go
# hraban/opus needs only libopus (not libopusfile) with this tag.
export GOFLAGS := -buildvcs=false -tags=nolibopusfile
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/loalang/loalang/daemon.Version=$(VERSION) -X main.commit=$(COMMIT)

# Debian packages the build, the tests and the demo need.
APT_PACKAGES := mosquitto mosquitto-clients libopus-dev libopusfile-dev libasound2-dev pkg-config \
	chromium ffmpeg espeak-ng sox socat iproute2 procps ca-certificates \
	coturn nftables

.PHONY: all deps build test vet run bench fuzz reliability clean

all: build

# deps installs the missing packages only, so it is idempotent and quick
# when everything is there.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "system packages: all present"; fi

build: deps
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/loalangd ./cmd/loalangd
	$(GO) build -o bin/loalang ./cmd/loalang
	$(GO) build -o bin/firmware-sim ./firmware-sim

vet:
	$(GO) vet ./...

test: deps vet
	$(GO) test -race -timeout 25m ./...

# run starts loalangd on configs/demo.yaml with the embedded broker and
# firmware-sim on its provisioning bundle. Ctrl-C stops both.
run: build
	./scripts/run-demo.sh

# bench runs the load, sync, latency and accuracy benchmarks; each prints a
# table and merges its figures into bench/results.json.
bench: build
	./scripts/bench.sh

# reliability runs the TestReliability* suite in its full form (damaged
# files, kill -9 crash loop, full disk, broker restarts, slow peers, network
# impairment, clock steps, a 10-minute soak); each prints its figures and
# can fail. make test runs the same tests in their light form.
reliability: deps
	./scripts/reliability.sh

# fuzz runs every fuzz target for FUZZTIME each.
FUZZTIME ?= 30s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin var
