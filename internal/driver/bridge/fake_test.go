package bridge

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
)

// fakeKernel is an in-memory kernel for unit tests.
type fakeKernel struct {
	mu      sync.Mutex
	hostRts []hostRoute
	brs     map[string]netip.Prefix // name -> address
	mtus    map[string]int          // bridge -> MTU
	netns   map[string][]string     // path -> interface names
	veths   map[string]Endpoint     // host end -> endpoint
	flushed []netip.Addr            // flushConntrack calls
}

func newFakeKernel(routes ...hostRoute) *fakeKernel {
	return &fakeKernel{hostRts: routes, brs: map[string]netip.Prefix{}, mtus: map[string]int{}, netns: map[string][]string{}, veths: map[string]Endpoint{}}
}

func (k *fakeKernel) routes() ([]hostRoute, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := slices.Clone(k.hostRts)
	for name, a := range k.brs {
		out = append(out, hostRoute{Dst: a.Masked(), Dev: name})
	}
	return out, nil
}

func (k *fakeKernel) uplinkMTU() (int, error) { return 1400, nil }

func (k *fakeKernel) ensureBridge(name string, addr netip.Prefix, mtu int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.brs[name] = addr
	k.mtus[name] = mtu
	return nil
}

func (k *fakeKernel) bridges() ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for name := range k.brs {
		out = append(out, name)
	}
	return out, nil
}

func (k *fakeKernel) deleteBridge(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.brs, name)
	return nil
}

func (k *fakeKernel) ensureNetns(path string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.netns[path]; !ok {
		k.netns[path] = []string{"lo"}
	}
	return nil
}

func (k *fakeKernel) deleteNetns(path string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.netns, path)
	for h, e := range k.veths {
		if e.Netns == path {
			delete(k.veths, h)
		}
	}
	return nil
}

func (k *fakeKernel) checkNetns(path string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.netns[path]; !ok {
		return fmt.Errorf("%s: no such namespace", filepath.Base(path))
	}
	return nil
}

func (k *fakeKernel) linkNames(path string) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	names := slices.Clone(k.netns[path])
	for _, e := range k.veths {
		if e.Netns == path {
			names = append(names, e.IfName)
		}
	}
	return names, nil
}

func (k *fakeKernel) ensureVeth(e *Endpoint, bridge string, mtu int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.brs[bridge]; !ok {
		return fmt.Errorf("bridge %s does not exist", bridge)
	}
	k.veths[e.HostIf] = *e
	return nil
}

func (k *fakeKernel) flushConntrack(ip netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.flushed = append(k.flushed, ip)
	return nil
}

func (k *fakeKernel) deleteVeth(hostIf string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.veths, hostIf)
	return nil
}
