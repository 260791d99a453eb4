package dns

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// What the handler does with a query.
const (
	actDrop    = iota // nothing goes back (a response sent to us, garbage without a header)
	actRespond        // resp is the answer
	actForward        // the name is not ours: ask an upstream (or SERVFAIL for a NoForward client)
)

// clientCfg is what the handler needs of a served container; replaced whole on update.
type clientCfg struct {
	networks  []string
	upstreams []netip.AddrPort
	noForward bool
}

// scratch is a reader's reusable memory, so that answering from the table allocates nothing.
type scratch struct {
	name  [256]byte
	addrs []netip.Addr
}

// verdict is the answer to one question, before encoding.
type verdict struct {
	act   int
	rcode int
	addrs []netip.Addr // A or AAAA answers (already filtered by type)
	names []string     // PTR answers
}

// resolve decides the answer to (lname, qtype) for a client: the table's addresses on its networks
// (NODATA for a known name without addresses of the asked type), NXDOMAIN for an unknown single-label
// name, the client's names for a PTR of a known address, and forwarding for everything else.
func (s *Server) resolve(c *clientCfg, sc *scratch, lname []byte, qtype uint16) verdict {
	if len(lname) == 0 { // the root: never ours
		return verdict{act: actForward}
	}
	all := s.table.appendLookup(sc.addrs[:0], c.networks, lname)
	sc.addrs = all[:0]
	if len(all) > 0 {
		out := all[:0]
		for _, a := range all {
			if (qtype == mdns.TypeA && a.Is4()) || (qtype == mdns.TypeAAAA && a.Is6() && !a.Is4In6()) {
				out = append(out, a)
			}
		}
		return verdict{act: actRespond, rcode: mdns.RcodeSuccess, addrs: out}
	}
	if qtype == mdns.TypePTR {
		if ip, ok := reverseAddr(string(lname)); ok {
			if names := s.table.Reverse(c.networks, ip); len(names) > 0 {
				return verdict{act: actRespond, rcode: mdns.RcodeSuccess, names: names}
			}
		}
	}
	if bytes.IndexByte(lname, '.') < 0 {
		if s.table.anyPending(c.networks) {
			return verdict{act: actRespond, rcode: mdns.RcodeServerFailure}
		}
		return verdict{act: actRespond, rcode: mdns.RcodeNameError}
	}
	return verdict{act: actForward}
}

// reverseAddr parses a reverse-mapping name (d.c.b.a.in-addr.arpa, or the 32 nibbles of ip6.arpa).
func reverseAddr(lname string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(lname, ".in-addr.arpa"); ok {
		p := strings.Split(rest, ".")
		if len(p) != 4 {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(p[3] + "." + p[2] + "." + p[1] + "." + p[0])
		return a, err == nil && a.Is4()
	}
	if rest, ok := strings.CutSuffix(lname, ".ip6.arpa"); ok {
		p := strings.Split(rest, ".")
		if len(p) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, nib := range p {
			if len(nib) != 1 {
				return netip.Addr{}, false
			}
			v := strings.IndexByte("0123456789abcdef", nib[0])
			if v < 0 {
				return netip.Addr{}, false
			}
			j := 31 - i
			b[j/2] |= byte(v) << (4 * (1 - j%2))
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// Header flag bits.
const (
	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagRA = 1 << 7
	flagCD = 1 << 4
)

// fastQuery parses the common query (one question, no other records, no compression, a name of
// letters, digits, '-' and '_') and lowercases its name into sc.name. ok is false for anything else,
// which goes to the general path.
func fastQuery(q []byte, sc *scratch) (lname []byte, qtype uint16, qend int, ok bool) {
	if len(q) < 17 {
		return nil, 0, 0, false
	}
	flags := binary.BigEndian.Uint16(q[2:])
	if flags&(flagQR|0x7800) != 0 || binary.BigEndian.Uint16(q[4:]) != 1 ||
		binary.BigEndian.Uint64(q[4:])&0xffffffffffff != 0 {
		return nil, 0, 0, false // a response, an opcode other than QUERY, not exactly one question
	}
	i, n := 12, 0
	for {
		if i >= len(q) {
			return nil, 0, 0, false
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) || i-12+l > 254 {
			return nil, 0, 0, false
		}
		if n > 0 {
			sc.name[n] = '.'
			n++
		}
		for _, c := range q[i : i+l] {
			switch {
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return nil, 0, 0, false
			}
			sc.name[n] = c
			n++
		}
		i += l
	}
	if i+4 != len(q) || binary.BigEndian.Uint16(q[i+2:]) != mdns.ClassINET {
		return nil, 0, 0, false
	}
	return sc.name[:n], binary.BigEndian.Uint16(q[i:]), i + 4, true
}

// appendFastReply encodes a table answer (A/AAAA records or none) to a fastQuery query: the question
// is copied, each record points at it, and records that do not fit in max bytes are left out with TC
// set. The addresses start at index rot, round robin.
func appendFastReply(dst, q []byte, qend int, v verdict, ttl uint32, qtype uint16, rot, max int) []byte {
	dst = append(dst[:0], q[:qend]...)
	flags := flagQR | flagAA | flagRA | binary.BigEndian.Uint16(q[2:])&(flagRD|flagCD) | uint16(v.rcode)
	n := 0
	for i := range v.addrs {
		a := v.addrs[(rot+i)%len(v.addrs)]
		size := 4
		if qtype == mdns.TypeAAAA {
			size = 16
		}
		if len(dst)+12+size > max {
			flags |= flagTC
			break
		}
		dst = append(dst, 0xc0, 12)
		dst = binary.BigEndian.AppendUint16(dst, qtype)
		dst = binary.BigEndian.AppendUint16(dst, mdns.ClassINET)
		dst = binary.BigEndian.AppendUint32(dst, ttl)
		dst = binary.BigEndian.AppendUint16(dst, uint16(size))
		if size == 4 {
			b := a.As4()
			dst = append(dst, b[:]...)
		} else {
			b := a.As16()
			dst = append(dst, b[:]...)
		}
		n++
	}
	binary.BigEndian.PutUint16(dst[2:], flags)
	binary.BigEndian.PutUint16(dst[6:], uint16(n))
	return dst
}

// udpLimit is the largest answer a client takes over UDP: 512 bytes, or its EDNS buffer size.
func udpLimit(m *mdns.Msg) int {
	if opt := m.IsEdns0(); opt != nil && opt.UDPSize() > mdns.MinMsgSize {
		return min(int(opt.UDPSize()), mdns.MaxMsgSize)
	}
	return mdns.MinMsgSize
}

// ednsSize is the buffer size the server announces to EDNS clients.
const ednsSize = 1232

// slowAnswer is the general path: any query miekg/dns parses. It returns the action, the packed
// answer for actRespond, and the client's UDP size limit.
func (s *Server) slowAnswer(dst []byte, c *clientCfg, sc *scratch, q []byte, tcp bool, rot int) ([]byte, int, int) {
	var m mdns.Msg
	if err := m.Unpack(q); err != nil {
		s.logs.note(logMalformed, "a query could not be parsed", "err", err)
		return formErr(dst, q), actRespond, mdns.MinMsgSize
	}
	limit := udpLimit(&m)
	if tcp {
		limit = mdns.MaxMsgSize
	}
	if m.Response {
		return nil, actDrop, limit
	}
	r := new(mdns.Msg)
	switch {
	case m.Opcode != mdns.OpcodeQuery:
		r.SetRcode(&m, mdns.RcodeNotImplemented)
	case len(m.Question) != 1:
		r.SetRcode(&m, mdns.RcodeFormatError)
	case m.Question[0].Qclass != mdns.ClassINET:
		return nil, actForward, limit
	default:
		qq := m.Question[0]
		lname := append(sc.name[:0], strings.ToLower(strings.TrimSuffix(qq.Name, "."))...)
		v := s.resolve(c, sc, lname, qq.Qtype)
		if v.act != actRespond {
			return nil, v.act, limit
		}
		r.SetRcode(&m, v.rcode)
		r.Authoritative = true
		hdr := mdns.RR_Header{Name: qq.Name, Rrtype: qq.Qtype, Class: mdns.ClassINET, Ttl: s.ttl}
		for i := range v.addrs {
			a := v.addrs[(rot+i)%len(v.addrs)]
			if a.Is4() {
				r.Answer = append(r.Answer, &mdns.A{Hdr: hdr, A: a.AsSlice()})
			} else {
				r.Answer = append(r.Answer, &mdns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		for _, n := range v.names {
			r.Answer = append(r.Answer, &mdns.PTR{Hdr: hdr, Ptr: mdns.Fqdn(n)})
		}
	}
	r.RecursionAvailable = true
	if m.IsEdns0() != nil {
		r.SetEdns0(ednsSize, false)
	}
	r.Truncate(limit)
	out, err := r.PackBuffer(dst)
	if err != nil {
		s.logs.note(logMalformed, "an answer could not be packed", "err", err)
		return formErr(dst, q), actRespond, limit
	}
	return out, actRespond, limit
}

// formErr is a bare FORMERR for a query whose header is readable (nil otherwise, and for responses).
func formErr(dst, q []byte) []byte {
	if len(q) < 12 || q[2]&0x80 != 0 {
		return nil
	}
	dst = append(dst[:0], q[:12]...)
	dst[2] = 0x80 | q[2]&0x79 // QR, the opcode and RD
	dst[3] = mdns.RcodeFormatError
	for i := 4; i < 12; i++ {
		dst[i] = 0
	}
	return dst
}

// rcodeReply is an answer with only a response code (SERVFAIL for a failed forward or a NoForward
// client), built from the query.
func rcodeReply(q []byte, rcode int) []byte {
	var m mdns.Msg
	if err := m.Unpack(q); err != nil {
		return formErr(nil, q)
	}
	r := new(mdns.Msg)
	r.SetRcode(&m, rcode)
	r.RecursionAvailable = true
	if m.IsEdns0() != nil {
		r.SetEdns0(ednsSize, false)
	}
	out, err := r.Pack()
	if err != nil {
		return formErr(nil, q)
	}
	return out
}

// handle answers one query of client c into dst: table answers through the fast path when the query
// is plain, else through miekg/dns. It returns the action and the client's UDP size limit.
func (s *Server) handle(dst []byte, c *clientCfg, sc *scratch, q []byte, tcp bool) ([]byte, int, int) {
	rot := int(s.rot.Add(1) & 0x3fffffff)
	if lname, qtype, qend, ok := fastQuery(q, sc); ok && qtype != mdns.TypePTR {
		limit := mdns.MinMsgSize
		if tcp {
			limit = mdns.MaxMsgSize
		}
		v := s.resolve(c, sc, lname, qtype)
		switch v.act {
		case actRespond:
			return appendFastReply(dst, q, qend, v, s.ttl, qtype, rot, limit), actRespond, limit
		case actForward:
			return nil, actForward, limit
		}
	}
	return s.slowAnswer(dst, c, sc, q, tcp, rot)
}
