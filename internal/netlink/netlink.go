package netlink

import (
	"fmt"
	"net"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Handle is the set of rtnetlink calls ov makes inside one network namespace. Its methods have the
// semantics of the same-named methods of *vishvananda/netlink.Handle, which satisfies it.
// Lookups go through LinkList (one dump per pass) rather than by name.
type Handle interface {
	LinkList() ([]vnl.Link, error)
	LinkAdd(link vnl.Link) error
	LinkDel(link vnl.Link) error
	LinkSetUp(link vnl.Link) error
	LinkSetMTU(link vnl.Link, mtu int) error
	LinkSetMasterByIndex(link vnl.Link, masterIndex int) error
	LinkSetHardwareAddr(link vnl.Link, hwaddr net.HardwareAddr) error
	// LinkSetHairpin lets a bridge port send a frame back out of the port it came in on.
	LinkSetHairpin(link vnl.Link, mode bool) error

	AddrList(link vnl.Link, family int) ([]vnl.Addr, error)
	AddrReplace(link vnl.Link, addr *vnl.Addr) error
	AddrDel(link vnl.Link, addr *vnl.Addr) error

	RouteList(link vnl.Link, family int) ([]vnl.Route, error)
	RouteAdd(route *vnl.Route) error
	RouteReplace(route *vnl.Route) error

	// NeighList with family unix.AF_BRIDGE lists FDB entries, with unix.AF_INET ARP entries.
	NeighList(linkIndex, family int) ([]vnl.Neigh, error)
	NeighSet(neigh *vnl.Neigh) error
	NeighAppend(neigh *vnl.Neigh) error
	NeighDel(neigh *vnl.Neigh) error

	// ConntrackDeleteFilters deletes the connection-tracking entries that match any of filters and
	// returns how many it deleted.
	ConntrackDeleteFilters(table vnl.ConntrackTableType, family vnl.InetFamily, filters ...vnl.CustomConntrackFilter) (uint, error)

	Close()
}

var _ Handle = (*vnl.Handle)(nil)

// Namespaces opens handles in network namespaces named by the path of a namespace file
// (/run/netns/NAME, /proc/PID/ns/net); the empty path is the caller's current namespace.
type Namespaces interface {
	// Handle returns a Handle working inside the namespace at path.
	Handle(path string) (Handle, error)
	// Fd opens the namespace at path for netlink.NsFd (to create a link directly inside it, e.g. the
	// peer of a veth). release closes it.
	Fd(path string) (fd int, release func(), err error)
	// Create makes path a network namespace that outlives processes (bind-mounted there), with its
	// loopback interface (down, as the kernel makes it); a path that is a namespace already is left
	// as it is. Remove unmounts and deletes it; a missing one is not an error.
	Create(path string) error
	Remove(path string) error
}

// System is the real Namespaces, backed by the kernel.
type System struct{}

var _ Namespaces = System{}

// Handle opens a netlink socket inside the namespace at path.
func (System) Handle(path string) (Handle, error) {
	if path == "" {
		h, err := vnl.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink: open handle in current namespace: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("netlink: open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := vnl.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink: open handle in network namespace %s: %w", path, err)
	}
	return h, nil
}

// Fd opens the namespace file at path ("" = /proc/thread-self/ns/net).
func (System) Fd(path string) (int, func(), error) {
	if path == "" {
		path = "/proc/thread-self/ns/net"
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("netlink: open network namespace %s: %w", path, err)
	}
	return fd, func() { unix.Close(fd) }, nil
}
