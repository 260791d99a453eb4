package apply

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ipam"
)

// The header every cluster file starts with.
const (
	APIVersion = "ov/v1"
	Kind       = "Cluster"
)

// ManagedLabel marks the networks apply created or adopted; only those are ever pruned. Every label whose
// key starts with ReservedLabelPrefix belongs to apply and may not appear in a file.
const (
	ManagedLabel        = "ov.apply/managed"
	ReservedLabelPrefix = "ov.apply/"
)

// File is a parsed and validated cluster file.
type File struct {
	Name     string // the file name used in messages, as given to Parse
	Hosts    []Host
	Networks []Network
}

// Network is one entry of the file's networks list. Network.Driver is always set (overlay when the file
// leaves it out); the other empty fields mean "keep what the cluster has, or let the controller choose".
type Network struct {
	api.Network
	Source
}

// Host is one entry of the file's hosts list.
type Host struct {
	api.Host
	Source
}

// Source says where an entry of the file is.
type Source struct {
	Line  int            // line of the list item
	Lines map[string]int // line of each field the file sets, by its YAML key ("subnet", "labels", ...)
}

// line returns the line of field, or of the item when the file does not set the field.
func (s Source) line(field string) int {
	if l, ok := s.Lines[field]; ok {
		return l
	}
	return s.Line
}

// Problem is one thing wrong with a file, at a line (0 when no line applies).
type Problem struct {
	Line int
	Msg  string
}

// FileError lists every problem found in a file, in line order. It wraps Class
// (errdefs.ErrInvalidArgument for a malformed file, errdefs.ErrConflict when the file clashes with the
// cluster's current state).
type FileError struct {
	File     string
	Problems []Problem
	Class    error
}

func (e *FileError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if p.Line > 0 {
			fmt.Fprintf(&b, "%s:%d: %s", e.File, p.Line, p.Msg)
		} else {
			fmt.Fprintf(&b, "%s: %s", e.File, p.Msg)
		}
	}
	return b.String()
}

func (e *FileError) Unwrap() error { return e.Class }

// problems collects Problems for one file.
type problems struct {
	file  string
	items []Problem
}

func (p *problems) add(line int, format string, args ...any) {
	p.items = append(p.items, Problem{Line: line, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was added, else a *FileError of class.
func (p *problems) err(class error) error {
	if len(p.items) == 0 {
		return nil
	}
	sort.SliceStable(p.items, func(i, j int) bool { return p.items[i].Line < p.items[j].Line })
	return &FileError{File: p.file, Problems: p.items, Class: class}
}

// Field names, in the order they are documented and validated.
var (
	topFields     = []string{"apiVersion", "kind", "hosts", "networks"}
	hostFields    = []string{"name", "address", "labels"}
	networkFields = []string{"name", "driver", "subnet", "gateway", "ipRange", "vni", "mtu", "internal", "encrypted", "labels"}
)

// Parse parses and validates a cluster file. filename is used only in messages. The returned error is a
// *FileError listing every problem with its line.
func Parse(filename string, data []byte) (*File, error) {
	p := &parser{problems: problems{file: filename}}
	f := p.parse(data)
	if err := p.err(errdefs.ErrInvalidArgument); err != nil {
		return nil, err
	}
	f.Name = filename
	return f, nil
}

type parser struct {
	problems
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntax records a YAML syntax error. yaml.v3 reports the line where the enclosing block starts (and
// off by one for some errors), so the line is found again as the first line at which the file's prefix
// stops parsing; the message is the parser's.
func (p *parser) syntax(data []byte, err error) {
	line, msg := syntaxLine(err)
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) <= maxBisectLines {
		end := 0
		for k, l := range lines {
			end += len(l)
			var n yaml.Node
			if perr := yaml.Unmarshal(data[:end], &n); perr != nil {
				line, msg = k+1, trimSyntax(perr)
				break
			}
		}
	}
	if line > 0 && line <= len(lines) {
		text := lines[line-1]
		switch {
		case bytes.Contains(bytes.TrimRight(text, "\n"), []byte("\t")):
			msg += "; indent with spaces, not tabs"
		case strings.Contains(msg, "',' or '}'") || strings.Contains(msg, "',' or ']'"):
			msg += "; close the { or [ that this line opens"
		case strings.Contains(msg, "expected") || strings.Contains(msg, "mapping values"):
			msg += "; check this line's indentation against the lines above it"
		}
	}
	p.add(line, "YAML syntax: %s", msg)
}

// maxBisectLines bounds the quadratic search for a syntax error's line; longer files get yaml.v3's line.
const maxBisectLines = 2000

func syntaxLine(err error) (int, string) {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, m[2]
	}
	return 0, strings.TrimPrefix(err.Error(), "yaml: ")
}

func trimSyntax(err error) string {
	_, msg := syntaxLine(err)
	return msg
}

func (p *parser) parse(data []byte) *File {
	f := &File{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(0, "the file is empty; start it with apiVersion: %s and kind: %s", APIVersion, Kind)
		} else {
			p.syntax(data, err)
		}
		return f
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.add(extra.Line, "a second YAML document (after ---) is not supported; put the whole cluster in one document")
	case !errors.Is(err, io.EOF):
		p.syntax(data, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || isNull(doc.Content[0]) {
		p.add(0, "the file is empty; start it with apiVersion: %s and kind: %s", APIVersion, Kind)
		return f
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		p.add(root.Line, "the file must be a mapping with apiVersion, kind, hosts and networks, not %s", describe(root))
		return f
	}
	var version, kind *yaml.Node
	p.mapping(root, "the file", topFields, func(k, v *yaml.Node) {
		switch k.Value {
		case "apiVersion":
			version = v
		case "kind":
			kind = v
		case "hosts":
			p.list(v, "hosts", func(item *yaml.Node) { f.Hosts = append(f.Hosts, p.host(item)) })
		case "networks":
			p.list(v, "networks", func(item *yaml.Node) { f.Networks = append(f.Networks, p.network(item)) })
		}
	})
	p.header(root, version, "apiVersion", APIVersion)
	p.header(root, kind, "kind", Kind)
	p.checkHosts(f.Hosts)
	p.checkNetworks(f.Networks)
	return f
}

// header checks the value v of a header field (nil when the file leaves it out).
func (p *parser) header(root, v *yaml.Node, field, want string) {
	if v == nil {
		p.add(root.Line, "%s is missing; add %s: %s", field, field, want)
		return
	}
	if s := p.scalar(v, field); v.Kind == yaml.ScalarNode && s != want {
		p.add(v.Line, "%s %q is not supported; use %s: %s", field, s, field, want)
	}
}

// mapping calls fn for every key of the mapping n in order, after reporting unknown and repeated keys
// (which fn never sees). what names the owner in messages.
func (p *parser) mapping(n *yaml.Node, what string, known []string, fn func(k, v *yaml.Node)) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, "%s must be a mapping of field: value, not %s", what, describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			p.add(k.Line, "%s: field %q is repeated (first at line %d); keep one", what, k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		if !contains(known, k.Value) {
			msg := fmt.Sprintf("%s: unknown field %q", what, k.Value)
			if s := suggest(k.Value, known); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			p.add(k.Line, "%s (known fields: %s)", msg, strings.Join(known, ", "))
			continue
		}
		fn(k, v)
	}
}

// list calls fn for every item of the sequence n; a null value is an empty list.
func (p *parser) list(n *yaml.Node, what string, fn func(item *yaml.Node)) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, "%s must be a list (items starting with \"- \"), not %s", what, describe(n))
		return
	}
	for _, item := range n.Content {
		fn(item)
	}
}

// scalar returns the text of a scalar node, reporting anything else.
func (p *parser) scalar(n *yaml.Node, what string) string {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		p.add(n.Line, "%s must be a single value, not %s", what, describe(n))
		return ""
	}
	if isNull(n) {
		return ""
	}
	return n.Value
}

// number returns the integer value of a scalar node; ok is false (and a problem recorded) otherwise.
func (p *parser) number(n *yaml.Node, what, hint string) (v int64, ok bool) {
	n = resolve(n)
	s := p.scalar(n, what)
	if n.Kind != yaml.ScalarNode {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		p.add(n.Line, "%s %q is not a whole number; %s", what, s, hint)
		return 0, false
	}
	return v, true
}

// labels reads a mapping of label key: value.
func (p *parser) labels(n *yaml.Node, what string) map[string]string {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, "%s: labels must be a mapping of key: value, not %s", what, describe(n))
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := p.scalar(k, what+": label key")
		if resolve(k).Kind != yaml.ScalarNode {
			continue
		}
		val := p.scalar(v, fmt.Sprintf("%s: label %q", what, key))
		switch {
		case resolve(v).Kind != yaml.ScalarNode:
			continue
		case key == "":
			p.add(k.Line, "%s: a label key is empty", what)
			continue
		case !validLabelKey(key):
			p.add(k.Line, "%s: label key %q: use up to 253 letters, digits, '.', '_', '-' and '/', starting and ending with a letter or digit", what, key)
			continue
		case strings.HasPrefix(key, ReservedLabelPrefix):
			p.add(k.Line, "%s: label %q is reserved for ovctl apply (it marks what apply manages); remove it from the file", what, key)
			continue
		case strings.ContainsAny(val, "\n\r"):
			p.add(v.Line, "%s: label %q: the value must be a single line", what, key)
			continue
		}
		if _, dup := out[key]; dup {
			p.add(k.Line, "%s: label %q is repeated; keep one", what, key)
			continue
		}
		out[key] = val
	}
	return out
}

// validLabelKey is `^[a-zA-Z0-9]([a-zA-Z0-9._/-]{0,251}[a-zA-Z0-9])?$` as a loop: compiling that
// regexp cost every ovctl start 0.7 ms.
func validLabelKey(k string) bool {
	if len(k) == 0 || len(k) > 253 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(k)-1 || c != '.' && c != '_' && c != '/' && c != '-') {
			return false
		}
	}
	return true
}

// itemName returns the name field of a list item, read before the other fields, and how messages name
// the item: `network "front"`, or "the network at line 12" when it has no name.
func itemName(n *yaml.Node, kind string) (name, what string) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := n.Content[i+1]; n.Content[i].Value == "name" && v.Kind == yaml.ScalarNode && !isNull(v) {
				return v.Value, fmt.Sprintf("%s %q", kind, v.Value)
			}
		}
	}
	return "", fmt.Sprintf("the %s at line %d", kind, n.Line)
}

func (p *parser) host(item *yaml.Node) Host {
	item = resolve(item)
	h := Host{Source: Source{Line: item.Line, Lines: map[string]int{}}}
	name, what := itemName(item, "host")
	bad := len(p.items)
	p.mapping(item, what, hostFields, func(k, v *yaml.Node) {
		h.Lines[k.Value] = k.Line
		switch k.Value {
		case "name":
			h.Name = p.scalar(v, what+": name")
		case "address":
			h.Address = p.scalar(v, what+": address")
		case "labels":
			h.Labels = p.labels(v, what)
		}
	})
	if len(p.items) > bad {
		return h
	}
	if name == "" {
		p.add(item.Line, "%s has no name; add name:", what)
		return h
	}
	if _, ok := h.Lines["address"]; !ok {
		p.add(item.Line, "%s has no address; add address: with its underlay IPv4 address", what)
		return h
	}
	if err := h.Host.Validate(); err != nil {
		field := "address"
		if !api.ValidName(h.Name) {
			field = "name"
		}
		p.add(h.line(field), "%s", clean(err))
	}
	return h
}

func (p *parser) network(item *yaml.Node) Network {
	item = resolve(item)
	n := Network{Source: Source{Line: item.Line, Lines: map[string]int{}}}
	n.Driver = api.DriverOverlay
	name, what := itemName(item, "network")
	bad := len(p.items)
	p.mapping(item, what, networkFields, func(k, v *yaml.Node) {
		x := &n.Network
		n.Lines[k.Value] = k.Line
		switch k.Value {
		case "name":
			x.Name = p.scalar(v, what+": name")
		case "driver":
			x.Driver = p.scalar(v, what+": driver")
		case "subnet":
			x.Subnet = p.scalar(v, what+": subnet")
		case "gateway":
			x.Gateway = p.scalar(v, what+": gateway")
		case "ipRange":
			x.IPRange = p.scalar(v, what+": ipRange")
		case "vni":
			if num, ok := p.number(v, what+": vni", "use 1-16777215, or leave vni out to let the controller choose"); ok {
				if num < 1 || num > 1<<24-1 {
					p.add(v.Line, "%s: VNI %d is out of range; use 1-16777215, or leave vni out to let the controller choose", what, num)
				} else {
					x.VNI = uint32(num)
				}
			}
		case "mtu":
			if num, ok := p.number(v, what+": mtu", "use 576-65535, or leave mtu out to derive it from the underlay"); ok {
				if num < 576 || num > 65535 {
					p.add(v.Line, "%s: MTU %d is out of range; use 576-65535, or leave mtu out to derive it from the underlay", what, num)
				} else {
					x.MTU = int(num)
				}
			}
		case "internal":
			v = resolve(v)
			if v.Kind != yaml.ScalarNode || v.Decode(&x.Internal) != nil {
				p.add(v.Line, "%s: internal must be true or false, not %s", what, describe(v))
			}
		case "encrypted":
			v = resolve(v)
			if v.Kind != yaml.ScalarNode || v.Decode(&x.Encrypted) != nil {
				p.add(v.Line, "%s: encrypted must be true or false, not %s", what, describe(v))
			}
		case "labels":
			x.Labels = p.labels(v, what)
		}
	})
	if len(p.items) > bad {
		return n
	}
	if name == "" {
		p.add(item.Line, "%s has no name; add name:", what)
		return n
	}
	if n.Driver == "" {
		p.add(n.line("driver"), "%s: driver is empty; use driver: overlay, or leave driver out", what)
		return n
	}
	for _, need := range []string{"gateway", "ipRange"} {
		if _, set := n.Lines[need]; set && n.Subnet == "" {
			p.add(n.line(need), "%s: %s needs a subnet; add subnet:, or leave %s out too to let the controller choose", what, need, need)
			return n
		}
	}
	// api.Network.Validate is the single authority on a network's fields. It stops at the first bad
	// field, so fields are added one at a time in its order to learn which line is wrong.
	var v api.Network
	steps := []struct {
		field string
		set   func()
	}{
		{"name", func() { v.Name, v.Driver = n.Name, api.DriverOverlay }},
		{"driver", func() { v.Driver = n.Driver }},
		{"subnet", func() { v.Subnet = n.Subnet }},
		{"gateway", func() { v.Gateway = n.Gateway }},
		{"ipRange", func() { v.IPRange = n.IPRange }},
		{"vni", func() { v.VNI = n.VNI }},
		{"mtu", func() { v.MTU = n.MTU }},
	}
	for _, s := range steps {
		s.set()
		if err := v.Validate(); err != nil {
			p.add(n.line(s.field), "%s", clean(err))
			return n
		}
		if s.field == "driver" && n.Driver != api.DriverOverlay {
			p.add(n.line("driver"), "%s: driver %s makes a network local to one host, which a cluster file cannot declare; use driver: overlay, or run ovctl network create --driver %s on that host", what, n.Driver, n.Driver)
			return n
		}
	}
	return n
}

// checkHosts reports hosts that repeat a name or an address.
func (p *parser) checkHosts(hosts []Host) {
	names, addrs := map[string]int{}, map[string]*Host{}
	for i := range hosts {
		h := &hosts[i]
		if h.Name != "" {
			if first, dup := names[h.Name]; dup {
				p.add(h.line("name"), "host %q is declared twice (first at line %d); host names must be unique", h.Name, first)
			} else {
				names[h.Name] = h.line("name")
			}
		}
		a, err := netip.ParseAddr(h.Address)
		if err != nil {
			continue
		}
		if first, dup := addrs[a.String()]; dup {
			p.add(h.line("address"), "host %q: address %s is already the address of host %q (line %d); each host needs its own underlay address", h.Name, a, first.Name, first.line("address"))
		} else {
			addrs[a.String()] = h
		}
	}
}

// checkNetworks reports networks that repeat a name, a VNI, or overlap another network's subnet.
func (p *parser) checkNetworks(nets []Network) {
	names := map[string]int{}
	vnis := map[uint32]*Network{}
	var withSubnet []*Network
	for i := range nets {
		n := &nets[i]
		if n.Name != "" {
			if first, dup := names[n.Name]; dup {
				p.add(n.line("name"), "network %q is declared twice (first at line %d); network names must be unique", n.Name, first)
			} else {
				names[n.Name] = n.line("name")
			}
		}
		if n.VNI != 0 {
			if first, dup := vnis[n.VNI]; dup {
				p.add(n.line("vni"), "network %q: VNI %d is already the VNI of network %q (line %d); choose another vni, or leave it out", n.Name, n.VNI, first.Name, first.line("vni"))
			} else {
				vnis[n.VNI] = n
			}
		}
		s, err := netip.ParsePrefix(n.Subnet)
		if err != nil {
			continue
		}
		for _, o := range withSubnet {
			if op := netip.MustParsePrefix(o.Subnet); ipam.Overlaps(op, s) {
				p.add(n.line("subnet"), "network %q: subnet %s overlaps network %q (%s, line %d); choose another subnet", n.Name, s, o.Name, op, o.line("subnet"))
				break
			}
		}
		withSubnet = append(withSubnet, n)
	}
}

// clean drops the class suffix (": invalid argument") that api's Validate methods append for errors.Is,
// since a file's problems are listed as lines.
func clean(err error) string {
	return strings.TrimSuffix(err.Error(), ": "+errdefs.ErrInvalidArgument.Error())
}

// resolve follows an alias (*name) to the node its anchor (&name) marks.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names what a node is, for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "this"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the known field closest to s (ignoring case, '_' and '-', or within two edits), or "".
func suggest(s string, known []string) string {
	norm := func(x string) string { return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(x)) }
	best, bestD := "", 3
	for _, k := range known {
		if norm(k) == norm(s) {
			return k
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
