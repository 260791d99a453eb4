# ov: build, test, benchmark and demo. Run as root: the tests and the demo create namespaces,
# links, mounts and cgroups (and remove them again).
GO        ?= go
BIN       := bin
CMDS      := ovrt ovagent ovshim ovcontroller ovctl ovlab
TESTFLAGS ?= -count=1 -timeout 80m

.PHONY: all build deps test bench demo demo-runtime clean vet

all: build

deps:
	@bash scripts/deps.sh

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do if [ -d cmd/$$c ]; then $(GO) build -o $(BIN)/$$c ./cmd/$$c || exit 1; fi; done

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }

# All tests: unit, privileged (root), integration (real etcd) and end-to-end (test/e2e).
test: deps build vet
	$(GO) test $(TESTFLAGS) ./...

# Benchmarks write their tables to docs/performance.md.
bench: deps build
	@bash scripts/bench.sh

# The main job: see README.md. KEEP=1 leaves the lab up.
demo: deps build
	@KEEP=$(KEEP) bash scripts/demo.sh

# A single container with ov's own OCI runtime, ovrt.
demo-runtime: deps build
	@bash scripts/demo-runtime.sh

clean:
	rm -rf $(BIN)
