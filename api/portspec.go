package api

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// PortSpec is one parsed -p value, the form the bridge driver publishes and keeps in its state:
// traffic to HostIP:HostPort (every local address when HostIP is the zero Addr) with protocol Proto
// goes to the container's ContainerPort. PortMapping is its wire form in requests.
type PortSpec struct {
	HostIP        netip.Addr `json:"hostIP,omitzero"`
	HostPort      uint16     `json:"hostPort"`
	ContainerPort uint16     `json:"containerPort"`
	Proto         string     `json:"proto"` // "tcp" or "udp"
}

// String renders the mapping as -p takes it: [HOSTIP:]HOSTPORT:PORT/PROTO.
func (p PortSpec) String() string {
	s := fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Proto)
	if p.HostIP.IsValid() {
		s = p.HostIP.String() + ":" + s
	}
	return s
}

// Clashes reports whether p and q cannot both be published: same protocol and host port, and the same
// host address or either one on every address.
func (p PortSpec) Clashes(q PortSpec) bool {
	return p.Proto == q.Proto && p.HostPort == q.HostPort &&
		(!p.HostIP.IsValid() || !q.HostIP.IsValid() || p.HostIP == q.HostIP)
}

// PortSpecUsage tells how to write a -p value; errors about one end with it.
const PortSpecUsage = "use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]"

// ParsePortSpec parses one -p value: [HOSTIP:]HOSTPORT:PORT[/tcp|udp]. The protocol defaults to tcp and
// a host address of 0.0.0.0 means every address. Errors wrap errdefs.ErrInvalidArgument and read like
// `invalid -p "80:abc": container port "abc" is not a number; use [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`.
func ParsePortSpec(spec string) (PortSpec, error) {
	bad := func(format string, args ...any) (PortSpec, error) {
		return PortSpec{}, invalidf("invalid -p %q: %s; %s", spec, fmt.Sprintf(format, args...), PortSpecUsage)
	}
	m := PortSpec{Proto: "tcp"}
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
func ParsePortSpecs(specs []string) ([]PortSpec, error) {
	var out []PortSpec
	for _, s := range specs {
		m, err := ParsePortSpec(s)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if o.Clashes(m) {
				return nil, invalidf("invalid -p %q: host port %d/%s is already published by -p %q; publish each host port once", s, m.HostPort, m.Proto, o.String())
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// Wire returns the wire form of p.
func (p PortSpec) Wire() PortMapping {
	w := PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: p.Proto}
	if p.HostIP.IsValid() {
		w.HostIP = p.HostIP.String()
	}
	return w
}

// invalidf returns an errdefs.ErrInvalidArgument whose message is exactly the formatted text.
func invalidf(format string, args ...any) error {
	return errdefs.FromWire(errdefs.Code(errdefs.ErrInvalidArgument), fmt.Sprintf(format, args...))
}
