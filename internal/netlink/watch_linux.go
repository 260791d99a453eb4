package netlink

import (
	"context"
	"errors"
	"fmt"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Event is a change the kernel reported in a namespace.
type Event struct {
	Link    string // name of the link concerned, "" when unknown
	Deleted bool   // the link or entry went away
	Neigh   bool   // a neighbour (ARP) or FDB entry changed on Link, rather than Link itself
	FDB     bool   // the entry is an FDB entry (AF_BRIDGE), not an ARP entry
	FDBSelf bool   // an FDB entry of the device itself (NTF_SELF), not of the bridge it is a port of
}

// Watcher reports kernel changes in a namespace. System implements it; the Fake does not.
type Watcher interface {
	// Watch calls fn for every link, neighbour and FDB change in the namespace at path until ctx ends
	// (then it returns nil) or the subscription fails. fn must not block.
	Watch(ctx context.Context, path string, fn func(Event)) error
}

var _ Watcher = System{}

// Watch subscribes to rtnetlink link and neighbour notifications inside the namespace at path.
func (System) Watch(ctx context.Context, path string, fn func(Event)) error {
	ns := netns.None()
	if path != "" {
		var err error
		if ns, err = netns.GetFromPath(path); err != nil {
			return fmt.Errorf("netlink watch: open network namespace %s: %w", path, err)
		}
		defer ns.Close()
	} else {
		var err error
		if ns, err = netns.Get(); err != nil {
			return fmt.Errorf("netlink watch: current network namespace: %w", err)
		}
		defer ns.Close()
	}
	done := make(chan struct{})
	defer close(done)
	errc := make(chan error, 2)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	links := make(chan vnl.LinkUpdate, 256)
	neighs := make(chan vnl.NeighUpdate, 256)
	if err := vnl.LinkSubscribeWithOptions(links, done, vnl.LinkSubscribeOptions{Namespace: &ns, ErrorCallback: onErr, ListExisting: true}); err != nil {
		return fmt.Errorf("netlink watch: subscribe to links in %q: %w", path, err)
	}
	if err := vnl.NeighSubscribeWithOptions(neighs, done, vnl.NeighSubscribeOptions{Namespace: &ns, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("netlink watch: subscribe to neighbours in %q: %w", path, err)
	}
	names := map[int]string{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("netlink watch in %q: %w", path, err)
		case u, ok := <-links:
			if !ok {
				return errors.New("netlink watch: link subscription closed")
			}
			a := u.Link.Attrs()
			del := u.Header.Type == unix.RTM_DELLINK
			if del {
				delete(names, a.Index)
			} else {
				names[a.Index] = a.Name
			}
			fn(Event{Link: a.Name, Deleted: del})
		case u, ok := <-neighs:
			if !ok {
				return errors.New("netlink watch: neighbour subscription closed")
			}
			fdb := u.Family == unix.AF_BRIDGE
			fn(Event{Link: names[u.LinkIndex], Deleted: u.Type == unix.RTM_DELNEIGH, Neigh: true,
				FDB: fdb, FDBSelf: fdb && u.Flags&unix.NTF_SELF != 0})
		}
	}
}
