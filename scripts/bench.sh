#!/usr/bin/env bash
# Runs every benchmark of ov. Each step measures one component beside its reference in the same run
# and writes its own section of docs/performance.md (internal/perfdoc), so steps can run in any
# order and one failing leaves the others' figures alone. A step whose component is not built yet
# is skipped with a message. Run as root (make bench).
#
# To add a benchmark: write a function bench_<name> below (build what it needs into bin/, return
# 0 when done, or call skip "<reason>" and return) and add <name> to STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
OUT=${OUT:-docs/performance.md}
mkdir -p bin docs

STEPS=(runtime image overlay ipam bridge cluster engine dns pull)

skip() { echo "bench: ${CURRENT}: skipped: $*" >&2; }

# runtime: start-to-exit latency of `ovrt run` of /bin/true beside `runc run` of the same bundle.
bench_runtime() {
	if [ ! -d cmd/ovbench-runtime ]; then skip "cmd/ovbench-runtime does not exist"; return; fi
	if [ ! -x bin/ovrt ]; then echo "bench: runtime: bin/ovrt is not built (make build); measuring runc alone" >&2; fi
	if [ ! -x /usr/sbin/runc ]; then echo "bench: runtime: /usr/sbin/runc missing (make deps); measuring ovrt alone" >&2; fi
	"$GO" build -o bin/ovbench-runtime ./cmd/ovbench-runtime || return 1
	bin/ovbench-runtime -out "$OUT" -runs "${RUNTIME_RUNS:-50}" -ovrt bin/ovrt -runc /usr/sbin/runc
}

# image: image store Load and Prepare/Release beside `tar -xf` and `cp -a` of the same rootfs.
bench_image() {
	OV_PERFDOC="$PWD/$OUT" OV_BENCH_RUNS="${IMAGE_RUNS:-15}" "$GO" test -count=1 -run '^TestBenchImage$' ./internal/image
}

# overlay: iperf3 TCP throughput and ping RTT over ov's VXLAN overlay (vxlan.Driver on two lab hosts)
# beside a VXLAN tunnel made by hand with iproute2 and the bare underlay, and an encrypted network
# (WireGuard, wireguard-go on TUN) beside them (its own "encryption" section), interleaved rounds (15 short
# rounds rather than a few long ones: the median of the per-round ratios then shrugs off bursts of
# other load on a shared machine; with 9 a run at 09:09 on 2026-12-03 gave 0.85 and one at 09:13 with 15
# gave 1.02 on the same code, per-round ratios 0.59-1.00 and 0.83-1.25).
bench_overlay() {
	"$GO" build -o bin/ovbench-overlay ./cmd/ovbench-overlay || return 1
	bin/ovbench-overlay -out "$OUT" -seconds "${OVERLAY_SECONDS:-3}" -rounds "${OVERLAY_ROUNDS:-15}"
}

# ipam: address allocations/s through the controller API (1, 10, 50 clients) beside bare etcd
# transactions of the same shape against the same embedded etcd.
bench_ipam() {
	"$GO" build -o bin/ovbench-ipam ./cmd/ovbench-ipam || return 1
	bin/ovbench-ipam -out "$OUT" -duration "${IPAM_DURATION:-1s}" -rounds "${IPAM_ROUNDS:-5}"
}

# bridge: network.Driver Attach/Detach of a container with a published port beside the same objects
# made by hand with ip and iptables commands, inside a namespace playing the host.
bench_bridge() {
	OV_PERFDOC="$PWD/$OUT" OV_BENCH_RUNS="${BRIDGE_RUNS:-20}" "$GO" test -count=1 -run '^TestBenchBridge$' ./internal/driver/bridge
}

# cluster: on a 3-host lab (internal/lab, real agents and controller), the time until a container
# started on host1 is reached from host2, beside the same from host1 and `ovctl run -d` itself; and the
# time until a dead host's entries are withdrawn, beside memberlist's detection bound. About 2 minutes.
bench_cluster() {
	local c
	for c in ovagent ovcontroller ovctl ovrt ovbench-cluster; do
		"$GO" build -o "bin/$c" "./cmd/$c" || return 1
	done
	bin/ovbench-cluster -out "$OUT" -bin bin -runs "${CLUSTER_RUNS:-40}" -deaths "${CLUSTER_DEATHS:-5}"
}

# engine: `ovctl run --rm busybox true` (bridge and --network none) through a real ovagent beside
# `runc run` of the same rootfs, medians of ENGINE_RUNS; containers/s with 10 runs at a time.
bench_engine() {
	OV_PERFDOC="$PWD/$OUT" OV_BENCH_RUNS="${ENGINE_RUNS:-20}" "$GO" test -count=1 -timeout 30m -run '^TestBenchEngine$' ./test/agent
}

# dns: dnsperf (4 sockets, 100 queries outstanding) inside a container's network namespace, asking the
# resolver at 127.0.0.11 for a container of the same user-defined bridge network, on a 1-host lab:
# queries/s, latency p50/p99 (from a second run with -v) and the agent's CPU; beside Docker's embedded
# DNS measured the same way when dockerd is installed (docker.io is not in make deps: install it by
# hand for the reference row; the benchmark runs its own dockerd in a namespace of its own, with
# --iptables=false, and stops it). About a minute.
bench_dns() {
	OV_PERFDOC="$PWD/$OUT" OV_BENCH_SECONDS="${DNS_SECONDS:-15}" "$GO" test -count=1 -timeout 20m -run '^TestBenchDNS$' ./test/e2e
}

# pull: `ovctl image pull`'s engine (image.Store.Pull) of a 5-layer image (about 17 MiB) from Debian's
# docker-registry on loopback, cold and warm, beside `docker pull` of the same image from the same
# registry when dockerd is installed (docker.io is not in make deps; its own dockerd in a namespace,
# stopped after). Under a minute.
bench_pull() {
	OV_PERFDOC="$PWD/$OUT" OV_BENCH_RUNS="${PULL_RUNS:-5}" "$GO" test -count=1 -timeout 20m -run '^TestBenchPull$' ./test/e2e
}

if [ "$(id -u)" != 0 ]; then
	echo "bench: needs root (namespaces, cgroups, mounts); run: sudo make bench" >&2
	exit 1
fi
# `scripts/bench.sh runtime overlay` runs only the steps named.
if (($#)); then STEPS=("$@"); fi
failed=()
for CURRENT in "${STEPS[@]}"; do
	if ! declare -F "bench_${CURRENT}" >/dev/null; then
		echo "bench: no step ${CURRENT}" >&2
		failed+=("${CURRENT}")
		continue
	fi
	echo "== bench: ${CURRENT}" >&2
	if ! "bench_${CURRENT}"; then
		echo "bench: ${CURRENT}: FAILED" >&2
		failed+=("${CURRENT}")
	fi
done
if ((${#failed[@]})); then
	echo "bench: failed: ${failed[*]} (the other steps' tables are written)" >&2
	exit 1
fi
echo "bench: done; tables in ${OUT}" >&2
