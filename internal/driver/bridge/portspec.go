package bridge

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// PortMapping is one published port: traffic to HostIP:HostPort (every local address when HostIP is
// the zero Addr) with protocol Proto goes to the container's ContainerPort.
type PortMapping struct {
	HostIP        netip.Addr `json:"hostIP,omitzero"`
	HostPort      uint16     `json:"hostPort"`
	ContainerPort uint16     `json:"containerPort"`
	Proto         string     `json:"proto"` // "tcp" or "udp"
}

// String renders the mapping as -p takes it: [HOSTIP:]HOSTPORT:PORT/PROTO.
func (p PortMapping) String() string {
	s := fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Proto)
	if p.HostIP.IsValid() {
		s = p.HostIP.String() + ":" + s
	}
	return s
}

// Clashes reports whether p and q cannot both be published: same protocol and host port, and the same
// host address or either one on every address.
func (p PortMapping) Clashes(q PortMapping) bool {
	return p.Proto == q.Proto && p.HostPort == q.HostPort &&
		(!p.HostIP.IsValid() || !q.HostIP.IsValid() || p.HostIP == q.HostIP)
}

const portUsage = "use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]"

// ParsePortSpec parses one -p value: [HOSTIP:]HOSTPORT:PORT[/tcp|udp]. The protocol defaults to tcp and
// a host address of 0.0.0.0 means every address. Errors wrap errdefs.ErrInvalidArgument and read like
// `invalid -p "80:abc": container port "abc" is not a number; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`.
func ParsePortSpec(spec string) (PortMapping, error) {
	bad := func(format string, args ...any) (PortMapping, error) {
		return PortMapping{}, errorf(errdefs.ErrInvalidArgument, "invalid -p %q: %s; %s", spec, fmt.Sprintf(format, args...), portUsage)
	}
	m := PortMapping{Proto: "tcp"}
	rest := spec
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		m.Proto = strings.ToLower(rest[i+1:])
		rest = rest[:i]
		if m.Proto != "tcp" && m.Proto != "udp" {
			return bad("protocol %q is not tcp or udp", spec[i+1:])
		}
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 2:
	case 3:
		a, err := netip.ParseAddr(parts[0])
		if err != nil || !a.Is4() {
			return bad("host address %q is not an IPv4 address", parts[0])
		}
		if !a.IsUnspecified() {
			m.HostIP = a
		}
		parts = parts[1:]
	case 1:
		return bad("no host port (ov does not pick one)")
	default:
		return bad("too many ':'")
	}
	var err error
	if m.HostPort, err = parsePort("host", parts[0]); err != nil {
		return bad("%v", err)
	}
	if m.ContainerPort, err = parsePort("container", parts[1]); err != nil {
		return bad("%v", err)
	}
	return m, nil
}

func parsePort(what, s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("%s port is empty", what)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s port %q is not a number", what, s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%s port %d is out of range 1-65535", what, n)
	}
	return uint16(n), nil
}

// ParsePortSpecs parses every -p value and refuses two that publish the same host port.
func ParsePortSpecs(specs []string) ([]PortMapping, error) {
	var out []PortMapping
	for _, s := range specs {
		m, err := ParsePortSpec(s)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if o.Clashes(m) {
				return nil, errorf(errdefs.ErrInvalidArgument, "invalid -p %q: host port %d/%s is already published by -p %q; publish each host port once", s, m.HostPort, m.Proto, o.String())
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// PortsFromAPI converts the wire form (api.PortMapping) and checks it as ParsePortSpecs does.
func PortsFromAPI(ps []api.PortMapping) ([]PortMapping, error) {
	specs := make([]string, len(ps))
	for i, p := range ps {
		specs[i] = p.String()
	}
	return ParsePortSpecs(specs)
}

// API returns the wire form of p.
func (p PortMapping) API() api.PortMapping {
	w := api.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: p.Proto}
	if p.HostIP.IsValid() {
		w.HostIP = p.HostIP.String()
	}
	return w
}
