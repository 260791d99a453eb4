package vxlan

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ChainDNAT is the nat chain of the overlay's published ports (-p): PREROUTING and OUTPUT jump to it
// for packets to a local address. It exists only while a local container publishes a port.
const ChainDNAT = "OV-OVERLAY-DNAT"

// Port is one published port of a local container: traffic to HostIP:HostPort on this host (every
// local address when HostIP is the zero Addr) with protocol Proto ("tcp" or "udp") goes to the
// container's overlay address, port ContainerPort.
type Port struct {
	HostIP        netip.Addr
	HostPort      uint16
	ContainerPort uint16
	Proto         string
}

// valid reports whether the port can be published.
func (p Port) valid() bool {
	return p.HostPort != 0 && p.ContainerPort != 0 && (p.Proto == "tcp" || p.Proto == "udp") &&
		(!p.HostIP.IsValid() || p.HostIP.Is4())
}

// clashes reports whether p and q cannot both be published (same protocol and host port, on the same
// host address or either one on every address).
func (p Port) clashes(q Port) bool {
	return p.Proto == q.Proto && p.HostPort == q.HostPort &&
		(!p.HostIP.IsValid() || !q.HostIP.IsValid() || p.HostIP == q.HostIP)
}

// published is one port to publish, with the endpoint and network it goes to.
type published struct {
	port Port
	ip   netip.Addr // the container's overlay address
	gw   string     // the network's gateway interface
	net  netip.Prefix
}

// publishedPorts lists the ports the host publishes, in the order of nets and their endpoints: none
// on an internal network (nothing enters it), none that is invalid, and of ports that clash the first
// only (the overlay driver refuses clashing ones before they get here).
func publishedPorts(nets []NetworkState) []published {
	var out []published
	for _, ns := range nets {
		if ns.Network.Internal {
			continue
		}
		for _, e := range ns.Endpoints {
			for _, p := range e.Ports {
				if !p.valid() || slices.ContainsFunc(out, func(o published) bool { return o.port.clashes(p) }) {
					continue
				}
				out = append(out, published{port: p, ip: e.IP, gw: GatewayName(ns.Network.VNI), net: ns.Network.Subnet.Masked()})
			}
		}
	}
	return out
}

// publishRules returns the rules that publish the ports of pubs (see publishedPorts):
//   - dnat, the content of ChainDNAT: traffic to the host port (on HostIP, or any local address: the
//     jumps into the chain match local destinations) is sent to the container's address and port;
//   - fwd, rules of OV-OVERLAY-FWD that go before its isolation rules: the DNATed connections may enter
//     the network from outside it (the underlay, or lo for the host's own clients) or from the network
//     itself (a container reaching a published port of its own network through the host), never from
//     another overlay network's gateway nor from the interfaces of isolateFrom (bridge networks); and a
//     packet to the container's address that was not DNATed (routed to it directly, or to a port
//     that is not published) is not let in;
//   - nat, rules of OV-OVERLAY-NAT: connections to a published port from the network's own subnet leave
//     with the gateway's address (hairpin), or the container would answer its neighbour directly and
//     the neighbour would drop the reply.
//
// Connections from outside keep their source address (no SNAT): the container answers through its
// default route, its host's gateway, where connection tracking undoes the DNAT, as on bridge networks.
func publishRules(pubs []published, isolateFrom []string) (dnat, fwd, nat [][]string) {
	if len(pubs) == 0 {
		return nil, nil, nil
	}
	for _, other := range isolateFrom {
		fwd = append(fwd, []string{"-i", other, "-o", "ovgw+", "-j", "DROP"})
	}
	for _, p := range pubs {
		proto, cport := p.port.Proto, strconv.Itoa(int(p.port.ContainerPort))
		var dst []string
		if p.port.HostIP.IsValid() {
			dst = []string{"-d", p.port.HostIP.String() + "/32"}
		}
		dnat = append(dnat, slices.Concat(dst, []string{"-p", proto, "-m", proto, "--dport", strconv.Itoa(int(p.port.HostPort)),
			"-j", "DNAT", "--to-destination", fmt.Sprintf("%s:%s", p.ip, cport)}))
		to := []string{"-d", p.ip.String() + "/32", "-o", p.gw, "-p", proto, "-m", proto, "--dport", cport, "-m", "conntrack", "--ctstate", "DNAT"}
		fwd = append(fwd,
			slices.Concat([]string{"!", "-i", "ovgw+"}, to, []string{"-j", "ACCEPT"}),
			slices.Concat([]string{"-i", p.gw}, to, []string{"-j", "ACCEPT"}))
		nat = append(nat, slices.Concat([]string{"-s", p.net.String()}, to, []string{"-j", "MASQUERADE"}))
	}
	return dnat, fwd, nat
}

// dnatJumps are the jumps into ChainDNAT: packets to a local address, arriving (PREROUTING) or sent by
// the host itself (OUTPUT).
var dnatJumps = []string{"PREROUTING", "OUTPUT"}

// flushConntrack deletes the connection-tracking entries of flows to or from ip, DNATed ones
// included, once the endpoint (and its rules: the firewall pass ran first) is gone: a published UDP
// port would otherwise keep sending to an address that left. A failure is logged, not returned.
func (p *pass) flushConntrack(container string, ip netip.Addr) {
	var toOrFrom, from vnl.ConntrackFilter
	err := toOrFrom.AddIP(vnl.ConntrackReplyAnyIP, net.IP(ip.AsSlice()))
	if err == nil {
		err = from.AddIP(vnl.ConntrackOrigSrcIP, net.IP(ip.AsSlice()))
	}
	var n uint
	if err == nil {
		n, err = p.h.ConntrackDeleteFilters(vnl.ConntrackTable, unix.AF_INET, &toOrFrom, &from)
	}
	if err != nil {
		p.d.log.Warn("cannot flush the conntrack entries of a container that published ports", "container", container, "ip", ip.String(), "err", err)
		return
	}
	if n > 0 {
		p.d.log.Debug("flushed conntrack entries", "container", container, "ip", ip.String(), "entries", n)
	}
}

// localnetWanted reports whether 127.0.0.1 reaches a port published on the network: one on every
// host address or on a loopback address. The host's own connections to it are DNATed in OUTPUT and
// leave through the gateway with their loopback source, which needs route_localnet there.
func localnetWanted(ns NetworkState) bool {
	if ns.Network.Internal {
		return false
	}
	for _, e := range ns.Endpoints {
		for _, p := range e.Ports {
			if p.valid() && (!p.HostIP.IsValid() || p.HostIP.IsLoopback()) {
				return true
			}
		}
	}
	return false
}

// localnetRules are the rules of OV-OVERLAY-NAT for the networks that localnetWanted: a connection
// from 127.0.0.0/8 to a published port leaves through the gateway with the gateway's address, so
// the container can answer it.
func localnetRules(nets []NetworkState) [][]string {
	var out [][]string
	for _, ns := range nets {
		if localnetWanted(ns) {
			out = append(out, []string{"-s", "127.0.0.0/8", "-o", GatewayName(ns.Network.VNI), "-j", "MASQUERADE"})
		}
	}
	return out
}

// localnet sets route_localnet on the network's gateway to on (see Config.RouteLocalnet). It touches
// the sysctl only to turn it on, or off on a gateway where it turned it on: a gateway is created with
// route_localnet off, and a network without ports published to 127.0.0.1 costs no sysctl access.
func (p *pass) localnet(n Network, on bool) error {
	if !p.d.cfg.RouteLocalnet || (!on && !p.d.localnetOn[n.VNI]) {
		return nil
	}
	f := "/proc/sys/net/ipv4/conf/" + GatewayName(n.VNI) + "/route_localnet"
	want := "0"
	if on {
		want = "1"
	}
	changed := false
	err := inNetns(p.d.cfg.HostNetns, func() error {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(b)) == want {
			return nil
		}
		changed = true
		return os.WriteFile(f, []byte(want+"\n"), 0o644)
	})
	if err != nil {
		return fmt.Errorf("set route_localnet=%s on %s (for ports published to 127.0.0.1): %w", want, GatewayName(n.VNI), err)
	}
	if changed {
		p.change("set route_localnet", "link", GatewayName(n.VNI), "value", want)
	}
	if p.d.localnetOn == nil {
		p.d.localnetOn = map[uint32]bool{}
	}
	if on {
		p.d.localnetOn[n.VNI] = true
	} else {
		delete(p.d.localnetOn, n.VNI)
	}
	return nil
}
