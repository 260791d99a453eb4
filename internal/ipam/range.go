package ipam

import (
	"fmt"
	"net/netip"

	"github.com/ovnet/ov/internal/errdefs"
)

// Range is the set of addresses a network hands out: First..Last inside Subnet, minus the network
// address, the broadcast address and Gateway.
type Range struct {
	Subnet  netip.Prefix
	Gateway netip.Addr
	First   netip.Addr // lowest address that may be handed out
	Last    netip.Addr // highest address that may be handed out
}

// ParseRange builds the Range of a network from its subnet, gateway and ip-range, as given on the
// command line. gateway "" means the first usable address of the subnet; ipRange "" means the whole
// subnet. Errors wrap errdefs.ErrInvalidArgument and name the value at fault.
func ParseRange(subnet, gateway, ipRange string) (Range, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Addr().Is4() {
		return Range{}, fmt.Errorf("subnet %q is not an IPv4 CIDR such as 10.20.0.0/24: %w", subnet, errdefs.ErrInvalidArgument)
	}
	if p.Masked() != p {
		return Range{}, fmt.Errorf("subnet %q has host bits set; did you mean %s?: %w", subnet, p.Masked(), errdefs.ErrInvalidArgument)
	}
	if p.Bits() > 30 {
		return Range{}, fmt.Errorf("subnet %q is too small; use a prefix of /30 or shorter: %w", subnet, errdefs.ErrInvalidArgument)
	}
	network, broadcast := p.Addr(), lastAddr(p)
	r := Range{Subnet: p, First: network.Next(), Last: broadcast.Prev()}
	if gateway == "" {
		r.Gateway = r.First
	} else {
		g, err := netip.ParseAddr(gateway)
		if err != nil || !g.Is4() {
			return Range{}, fmt.Errorf("gateway %q is not an IPv4 address: %w", gateway, errdefs.ErrInvalidArgument)
		}
		if !p.Contains(g) || g == network || g == broadcast {
			return Range{}, fmt.Errorf("gateway %s is not a usable address of subnet %s; choose one between %s and %s: %w", g, p, r.First, r.Last, errdefs.ErrInvalidArgument)
		}
		r.Gateway = g
	}
	if ipRange != "" {
		ip, err := netip.ParsePrefix(ipRange)
		if err != nil || !ip.Addr().Is4() {
			return Range{}, fmt.Errorf("ip-range %q is not an IPv4 CIDR: %w", ipRange, errdefs.ErrInvalidArgument)
		}
		if ip.Masked() != ip || ip.Bits() < p.Bits() || !p.Contains(ip.Addr()) {
			return Range{}, fmt.Errorf("ip-range %s is not inside subnet %s: %w", ipRange, p, errdefs.ErrInvalidArgument)
		}
		if f := ip.Addr(); f.Compare(r.First) > 0 {
			r.First = f
		}
		if l := lastAddr(ip); l.Compare(r.Last) < 0 {
			r.Last = l
		}
	}
	if r.Size() == 0 {
		return Range{}, fmt.Errorf("subnet %s with gateway %s and ip-range %q leaves no address for containers; widen the ip-range: %w", p, r.Gateway, ipRange, errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// Size is the number of addresses the range can hand out (the gateway excluded).
func (r Range) Size() int {
	if !r.First.IsValid() || r.First.Compare(r.Last) > 0 {
		return 0
	}
	n := int(u32(r.Last)-u32(r.First)) + 1
	if r.Gateway.Compare(r.First) >= 0 && r.Gateway.Compare(r.Last) <= 0 {
		n--
	}
	return n
}

// usable reports whether a may be handed out: inside First..Last and not the gateway.
func (r Range) usable(a netip.Addr) bool {
	return a.Is4() && a.Compare(r.First) >= 0 && a.Compare(r.Last) <= 0 && a != r.Gateway
}

// Next returns the first address after `after` (next-fit) that is usable and not taken, wrapping from
// Last to First. An invalid or out-of-range `after` starts the search at First. It returns
// errdefs.ErrExhausted when every address is taken.
func (r Range) Next(after netip.Addr, taken func(netip.Addr) bool) (netip.Addr, error) {
	size := int(u32(r.Last)-u32(r.First)) + 1
	if !r.First.IsValid() || r.First.Compare(r.Last) > 0 {
		size = 0
	}
	start := r.First
	if after.Is4() && after.Compare(r.First) >= 0 && after.Compare(r.Last) < 0 {
		start = after.Next()
	}
	a := start
	for i := 0; i < size; i++ {
		if a != r.Gateway && !taken(a) {
			return a, nil
		}
		if a == r.Last {
			a = r.First
		} else {
			a = a.Next()
		}
	}
	return netip.Addr{}, fmt.Errorf("subnet %s: all %d addresses between %s and %s are in use; release some or use a larger subnet or ip-range: %w", r.Subnet, r.Size(), r.First, r.Last, errdefs.ErrExhausted)
}

// Check tells whether a requested address may be given to a container: inside the subnet and
// the range, and neither the network, broadcast nor gateway address. Errors wrap ErrInvalidArgument.
func (r Range) Check(a netip.Addr) error {
	switch {
	case !a.Is4():
		return fmt.Errorf("address %q is not an IPv4 address: %w", a, errdefs.ErrInvalidArgument)
	case !r.Subnet.Contains(a):
		return fmt.Errorf("address %s is outside subnet %s; choose an address inside it: %w", a, r.Subnet, errdefs.ErrInvalidArgument)
	case a == r.Subnet.Addr():
		return fmt.Errorf("address %s is the network address of %s; choose another: %w", a, r.Subnet, errdefs.ErrInvalidArgument)
	case a == lastAddr(r.Subnet):
		return fmt.Errorf("address %s is the broadcast address of %s; choose another: %w", a, r.Subnet, errdefs.ErrInvalidArgument)
	case a == r.Gateway:
		return fmt.Errorf("address %s is the gateway of %s; choose another: %w", a, r.Subnet, errdefs.ErrInvalidArgument)
	case a.Compare(r.First) < 0 || a.Compare(r.Last) > 0:
		return fmt.Errorf("address %s is outside the ip-range %s-%s of %s; choose one inside it: %w", a, r.First, r.Last, r.Subnet, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Overlaps reports whether two prefixes share any address.
func Overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }

// PickSubnet returns the first /bits prefix of pool (in address order) that overlaps no prefix of
// avoid, or errdefs.ErrExhausted.
func PickSubnet(pool netip.Prefix, bits int, avoid []netip.Prefix) (netip.Prefix, error) {
	pool = pool.Masked()
	if !pool.Addr().Is4() || bits < pool.Bits() || bits > 30 {
		return netip.Prefix{}, fmt.Errorf("cannot carve /%d subnets out of pool %s: %w", bits, pool, errdefs.ErrInvalidArgument)
	}
	step := uint64(1) << (32 - bits)
	end := uint64(u32(pool.Addr())) + uint64(1)<<(32-pool.Bits())
	for v := uint64(u32(pool.Addr())); v < end; {
		cand := netip.PrefixFrom(fromU32(uint32(v)), bits)
		var hit netip.Prefix
		for _, a := range avoid {
			if a.Overlaps(cand) {
				hit = a.Masked()
				break
			}
		}
		if !hit.IsValid() {
			return cand, nil
		}
		// Skip past the prefix in the way (it may be larger than one step).
		next := uint64(u32(lastAddr(hit))) + 1
		if next <= v {
			next = v + step
		}
		// Align up to the step.
		v = (next + step - 1) / step * step
	}
	return netip.Prefix{}, fmt.Errorf("pool %s has no free /%d subnet left; give the network its subnet explicitly or remove networks: %w", pool, bits, errdefs.ErrExhausted)
}

// NextVNI returns the first VNI after `after` in min..max (wrapping) that is not taken, or
// errdefs.ErrExhausted.
func NextVNI(after uint32, min, max uint32, taken func(uint32) bool) (uint32, error) {
	if min == 0 || min > max {
		return 0, fmt.Errorf("VNI pool %d-%d is empty: %w", min, max, errdefs.ErrInvalidArgument)
	}
	v := min
	if after >= min && after < max {
		v = after + 1
	}
	for i := uint64(0); i <= uint64(max-min); i++ {
		if !taken(v) {
			return v, nil
		}
		if v == max {
			v = min
		} else {
			v++
		}
	}
	return 0, fmt.Errorf("all VNIs %d-%d are in use: %w", min, max, errdefs.ErrExhausted)
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// lastAddr is the broadcast address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	return fromU32(u32(p.Masked().Addr()) | (uint32(1)<<(32-p.Bits()) - 1))
}
