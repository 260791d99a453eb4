#!/usr/bin/env bash
# Installs the Debian packages ov's demo, tests and benchmarks need, only those missing.
# Safe to run repeatedly; needs root (apt-get) the first time.
set -euo pipefail
# Every program a test runs is here: under OV_STRICT=1 (.ci/run) a test whose program is missing fails.
# systemd provides systemd-analyze (deploy tests verify the unit files; works without systemd as PID 1).
# dnsperf: the DNS benchmark; gcc and libc6-dev: the DNS tests' glibc client, compiled at test time.
pkgs=(busybox-static runc iptables iproute2 iputils-ping iperf3 etcd-server etcd-client tcpdump tini procps psmisc kmod libseccomp-dev pkg-config util-linux systemd tar dnsperf gcc libc6-dev docker-registry)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# etcd-server's package starts no daemon on machines without systemd; ov starts its own etcd.
go mod download
