package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"time"

	vnl "github.com/vishvananda/netlink"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/iptables"
	"github.com/ovnet/ov/internal/netlink"
	"github.com/ovnet/ov/internal/vxlan"
)

// programPeers measures one host with peers remote endpoints (on 1,000 other hosts, one network)
// programmed from scratch into an empty fake kernel: the peer list computed from the endpoint records
// as the overlay driver keeps them, then one vxlan reconcile. It returns the seconds that took and the
// heap the host's state holds per peer (the endpoint records, the desired state and the fake kernel's
// neighbour and FDB entries); and the seconds one more reconcile takes once they are programmed, with
// one peer added (what every watch event costs the host: the whole state compared again).
// It also returns the CPU seconds of the first (cpuSecs): on a shared machine they move less than the
// wall time.
func programPeers(peers int) (secs, cpuSecs, bytesPerPeer, eventSecs float64, err error) {
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	local := netip.MustParseAddr("172.31.255.1")
	fake := netlink.NewFake()
	if err := fake.AddLink("", &vnl.Device{LinkAttrs: vnl.LinkAttrs{Name: "eth0", MTU: 1500}}, local.String()+"/12"); err != nil {
		return 0, 0, 0, 0, err
	}
	fake.AddNamespace("/c1")
	cfg := vxlan.DefaultConfig()
	cfg.LocalIP, cfg.IPForward, cfg.Watch, cfg.UnderlayMTU, cfg.Netlink, cfg.IPTables = local, false, false, 1500, fake, iptables.NewFake()
	d, err := vxlan.New(cfg)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	remote := make(map[string]api.Endpoint, peers)
	for i := range peers {
		h := i % 1000
		ip := netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})
		vtep := hostAddr(h)
		id := fmt.Sprintf("%064x", i)
		remote[hostName(h)+"/"+id] = api.Endpoint{Network: "big", Host: hostName(h), Container: id, IP: ip.String(), VTEP: vtep.String(), MAC: vxlan.MACFromIP(ip).String()}
	}
	t0 := time.Now()
	cpu0, _ := readProc(os.Getpid())
	st := vxlan.NetworkState{Network: vxlan.Network{Name: "big", VNI: 5000, Subnet: netip.MustParsePrefix("10.200.0.0/16"), Gateway: netip.MustParseAddr("10.200.255.254")},
		Endpoints: []vxlan.Endpoint{{ContainerID: "c1", NetNSPath: "/c1", IfName: "eth1", IP: netip.MustParseAddr("10.200.255.1")}}}
	vteps := map[netip.Addr]bool{}
	for _, ep := range remote { // as overlay's desired() does
		ip, _ := netip.ParseAddr(ep.IP)
		vtep, _ := netip.ParseAddr(ep.VTEP)
		st.Peers = append(st.Peers, vxlan.Peer{IP: ip, VTEP: vtep})
		vteps[vtep] = true
	}
	slices.SortFunc(st.Peers, func(a, b vxlan.Peer) int { return a.IP.Compare(b.IP) })
	for v := range vteps {
		st.VTEPs = append(st.VTEPs, v)
	}
	slices.SortFunc(st.VTEPs, func(a, b netip.Addr) int { return a.Compare(b) })
	if err := d.Reconcile(context.Background(), vxlan.State{Networks: []vxlan.NetworkState{st}}); err != nil {
		return 0, 0, 0, 0, err
	}
	secs = time.Since(t0).Seconds()
	cpu1, _ := readProc(os.Getpid())
	cpuSecs = cpu1.cpu - cpu0.cpu
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	extra := netip.MustParseAddr("10.200.255.2")
	t1 := time.Now()
	st.Peers = append(st.Peers, vxlan.Peer{IP: extra, VTEP: hostAddr(0)})
	slices.SortFunc(st.Peers, func(a, b vxlan.Peer) int { return a.IP.Compare(b.IP) })
	if err := d.Reconcile(context.Background(), vxlan.State{Networks: []vxlan.NetworkState{st}}); err != nil {
		return 0, 0, 0, 0, err
	}
	eventSecs = time.Since(t1).Seconds()
	bytesPerPeer = float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc)) / float64(peers)
	runtime.KeepAlive(remote)
	runtime.KeepAlive(st)
	runtime.KeepAlive(d)
	runtime.KeepAlive(fake)
	return secs, cpuSecs, bytesPerPeer, eventSecs, nil
}
