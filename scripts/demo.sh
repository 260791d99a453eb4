#!/usr/bin/env bash
# ov's main job, on one machine: a three-host cluster made of network namespaces (the lab), a controller
# with an embedded etcd, the cluster file deploy/examples/cluster.yaml applied, and containers on
# different hosts reaching each other with ping and HTTP, by overlay address and by name (the resolver
# every container finds at 127.0.0.11).
#
#   sudo make demo            run it, then take the lab down
#   sudo make demo KEEP=1     leave the lab up to play with (ovlab ctl host1 -- ps; ovlab down)
#
# Needs root and a built ov (make demo builds it). Traffic stays inside the lab's namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-$PWD/bin}
LABDIR=${LABDIR:-/var/lib/ovlab}
KEEP=${KEEP:-}
OVLAB="$BIN/ovlab --dir $LABDIR"

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
ctl() { local h=$1; shift; printf '\033[2m[%s]$ ovctl %s\033[0m\n' "$h" "$*"; $OVLAB ctl "$h" -- "$@"; }

if [ "$(id -u)" != 0 ]; then
	echo "demo: needs root (namespaces, links, mounts, cgroups); run: sudo make demo" >&2
	exit 1
fi
for b in ovlab ovagent ovcontroller ovctl ovrt; do
	[ -x "$BIN/$b" ] || { echo "demo: $BIN/$b is missing; run: make build" >&2; exit 1; }
done
if $OVLAB status >/dev/null 2>&1; then
	echo "demo: a lab from an earlier run is up in $LABDIR; taking it down first"
	$OVLAB down
fi

TMP=$(mktemp -d /tmp/ov-demo.XXXXXX)
cleanup() {
	local rc=$?
	set +e
	if [ -z "$KEEP" ] || [ "$rc" != 0 ]; then
		bold "Tearing the lab down"
		$OVLAB down
	fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT INT TERM

bold "1. A busybox image, built on the spot from the busybox-static package"
ROOTFS="$TMP/rootfs"
mkdir -p "$ROOTFS"/{bin,etc,proc,sys,dev,tmp,root,var/www}
cp /bin/busybox "$ROOTFS/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -sf busybox "$ROOTFS/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$ROOTFS/etc/passwd"
tar -C "$ROOTFS" -cf "$TMP/busybox.tar" .
echo "rootfs tarball: $TMP/busybox.tar ($(du -h "$TMP/busybox.tar" | cut -f1))"

bold "2. Three hosts: network namespaces on one underlay bridge, each with a real ovagent; one ovcontroller"
run $OVLAB up --hosts 3 --bin "$BIN"
for h in host1 host2 host3; do
	ctl $h image import "$TMP/busybox.tar" busybox >/dev/null
done
echo "imported busybox on host1, host2 and host3"
sleep 1
ctl host1 node ls

bold "3. The cluster file: two overlay networks (front, and the internal back)"
ctl host1 apply -f deploy/examples/cluster.yaml
echo "... and once more: applying the same file changes nothing"
ctl host1 apply -f deploy/examples/cluster.yaml
ctl host1 network ls

bold "4. Containers on different hosts"
ctl host1 run -d --name web --network front --network-alias www busybox sh -c 'echo "hello from web on host1" >/var/www/index.html; exec httpd -f -p 80 -h /var/www' >/dev/null
ctl host2 run -d --name client --network front busybox sleep 3600 >/dev/null
ctl host3 run -d --name db --network back busybox sleep 3600 >/dev/null
ip_of() { $OVLAB ctl "$1" -- inspect "$2" | grep -o '"ip": "[0-9.]*"' | head -1 | cut -d'"' -f4; }
WEB=$(ip_of host1 web)
CLIENT=$(ip_of host2 client)
DB=$(ip_of host3 db)
for h in host1 host2 host3; do ctl $h ps; done
echo "web=$WEB (host1, front)  client=$CLIENT (host2, front)  db=$DB (host3, back)"

bold "5. client on host2 reaches web on host1 by its overlay address: no port mapping"
ctl host2 exec client ping -c 3 "$WEB"
ctl host2 exec client wget -q -O - "http://$WEB/"
echo "... and web reaches client back"
ctl host1 exec web ping -c 1 "$CLIENT"

bold "6. By name: client on host2 finds web on host1 through the resolver at 127.0.0.11 in its namespace"
ctl host2 exec client cat /etc/resolv.conf
ctl host2 exec client nslookup web
ctl host2 exec client ping -c 1 web
ctl host2 exec client wget -q -O - http://web/
echo "... and by web's --network-alias www"
ctl host2 exec client wget -q -O - http://www/

bold "7. Isolation: db on the network back can neither reach web on front nor find its name"
if $OVLAB ctl host3 -- exec db ping -c 1 -W 1 "$WEB" >/dev/null 2>&1; then
	echo "UNEXPECTED: db reached web" >&2
	exit 1
fi
echo "db -> $WEB: no answer, as it should be"
if out=$($OVLAB ctl host3 -- exec db nslookup web 2>&1); then
	echo "UNEXPECTED: db resolved web:" >&2
	echo "$out" >&2
	exit 1
fi
echo "db: nslookup web -> $(echo "$out" | grep -o 'NXDOMAIN' | head -1 || true) (web's name is not known on back)"

bold "8. The data plane on host1 (VXLAN, learning off, entries programmed from the controller)"
VNI=$($OVLAB ctl host1 -- network inspect front | grep -o '"vni": [0-9]*' | grep -o '[0-9]*$')
run $OVLAB exec host1 -- ip -d link show "ovvx-$VNI"
run $OVLAB exec host1 -- bridge fdb show dev "ovvx-$VNI"
run $OVLAB exec host1 -- ip neigh show dev "ovvx-$VNI"

bold "What happened"
cat <<TXT
- ovlab built 3 hosts (network namespaces ovlab-h1..h3 on the bridge of ovlab-ul, underlay 192.168.77.0/24),
  started ovcontroller with an embedded etcd and one ovagent per host; the agents registered and gossip.
- ovctl apply created the overlay networks front (10.20.0.0/24) and back (10.30.0.0/24, internal) in etcd,
  each with a cluster-wide VNI; the second apply found nothing to change.
- Each ovctl run asked the controller for a unique address, built the network's VXLAN device on its host
  (learning off, proxy on) with the gateway and the container as macvlans on it, and the other hosts
  programmed static neighbour and FDB entries for the new container from the controller's endpoint watch.
- client ($CLIENT, host2) pinged and fetched http://$WEB/ from web on host1; db on another network could not.
- By name: every container of a user-defined network has /etc/resolv.conf naming 127.0.0.11, where
  host2's agent answers inside client's own namespace (no NAT). web's name and its alias www travel
  with its endpoint record from the controller to every host; db, on another network, gets NXDOMAIN.
TXT
if [ -n "$KEEP" ]; then
	echo
	echo "The lab stays up. Try: $OVLAB ctl host2 -- exec -it client sh    and when done: $OVLAB down"
fi
