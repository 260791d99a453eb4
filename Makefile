# ov: build, test, benchmark and demo. Run as root: the tests and the demo create namespaces,
# links, mounts and cgroups (and remove them again).
GO        ?= go
BIN       := bin
CMDS      := ovrt ovagent ovshim ovcontroller ovctl ovlab
TESTFLAGS ?= -count=1 -timeout 80m

FUZZTIME  ?= 30s

.PHONY: all build deps test unit fuzz bench bench-scale demo demo-runtime clean vet

all: build

deps:
	@bash scripts/deps.sh

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do if [ -d cmd/$$c ]; then $(GO) build -o $(BIN)/$$c ./cmd/$$c || exit 1; fi; done
	@CGO_ENABLED=0 $(GO) build -o $(BIN)/ovinit ./cmd/ovinit

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }

# All tests: unit, privileged (root), integration (real etcd) and end-to-end (test/e2e).
test: deps build vet
	$(GO) test $(TESTFLAGS) ./...

# Tests that need no root (any user): privileged tests skip (OV_UNIT=1, even as root) and -short skips
# the long etcd-cluster tests. No deps, no build: a quick check while editing.
unit:
	OV_UNIT=1 $(GO) test -short -count=1 ./...

# Every fuzz target (func FuzzXxx) for FUZZTIME each (default 30s), one after another. A crasher is
# written to the package's testdata/fuzz/FuzzXxx/: fix it and commit the file (it joins the seed corpus
# that every go test runs).
fuzz:
	@FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

# Benchmarks write their tables to docs/performance.md.
bench: deps build
	@bash scripts/bench.sh

# Scale: the real controller and SCALE_HOSTS simulated hosts (each the real overlay driver on a fake
# kernel), one run per host count, SCALE_NETWORKS networks, SCALE_ENDPOINTS endpoints per host. Each
# run is appended to docs/scale-runs.jsonl and the scale section of docs/performance.md shows them all
# (docs/scale.md). No root, no namespaces; CPU-heavy: the simulator's bring-up grows as hosts^3 on one
# machine, and the defaults take about 15 minutes on 2 cores (the 1,000-host run most of it).
# SCALE_SAMPLE=K simulates only K hosts in full (they are measured); the others are light hosts that
# register, heartbeat, allocate and hold their endpoint watch streams (SCALE_LIGHT_WATCH: network, one
# stream per network served, or host, one multiplexed stream per host) with no data plane: the
# controller and etcd get the whole cluster's load. SCALE_TIMEOUT (e.g. 35m) stops a run and prints
# where it stood. The issue's large layout (1,000 hosts x 100 endpoints, 100 networks):
# The issue's large row (docs/scale.md, "The sampled mode"; about 30 minutes here):
# make bench-scale SCALE_HOSTS=1000 SCALE_NETWORKS=100 SCALE_ENDPOINTS=100 SCALE_SAMPLE=20 SCALE_BRINGUP=endpoints-first SCALE_TIMEOUT=60m
# make bench-scale SCALE_HOSTS="1000" SCALE_NOTE="quiet machine"
SCALE_HOSTS       ?= 100 300 1000
SCALE_NETWORKS    ?= 10
SCALE_ENDPOINTS   ?= 1
SCALE_ETCD        ?= embedded
SCALE_SAMPLE      ?= 0
SCALE_LIGHT_WATCH ?= host
SCALE_BRINGUP     ?= watch-first
SCALE_TIMEOUT     ?= 0
SCALE_NOTE        ?=
bench-scale:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ovbench-scale ./cmd/ovbench-scale
	@for h in $(SCALE_HOSTS); do \
		echo "== bench-scale: $$h hosts x $(SCALE_ENDPOINTS) endpoints, $(SCALE_NETWORKS) networks ($(SCALE_ETCD) etcd, sample $(SCALE_SAMPLE))" >&2; \
		nice -n 10 $(BIN)/ovbench-scale -hosts $$h -networks $(SCALE_NETWORKS) -endpoints-per-host $(SCALE_ENDPOINTS) -etcd $(SCALE_ETCD) \
			-sample $(SCALE_SAMPLE) -light-watch $(SCALE_LIGHT_WATCH) -bringup $(SCALE_BRINGUP) -timeout $(SCALE_TIMEOUT) \
			-note "$(SCALE_NOTE)" -rows docs/scale-runs.jsonl -out docs/performance.md -json || exit 1; \
	done

# The main job: see README.md. KEEP=1 leaves the lab up.
demo: deps build
	@KEEP=$(KEEP) bash scripts/demo.sh

# A single container with ov's own OCI runtime, ovrt.
demo-runtime: deps build
	@bash scripts/demo-runtime.sh

clean:
	rm -rf $(BIN)
