package overlay

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/ovnet/ov/api"
)

// BenchmarkDesired: the desired state a watch event costs the agent to compute on a host serving 19
// networks of 3,000 remote endpoints each (57,000 peers): all of it (desired, a complete reconcile)
// against the event's network alone (desiredNetworks, a reconcile of that network).
func BenchmarkDesired(b *testing.B) {
	ctl := newFakeController()
	d, err := New(Config{Host: "host1", Address: netip.MustParseAddr("192.168.77.11"), StatePath: filepath.Join(b.TempDir(), "overlay.json"),
		Connect: ctl.connect, Dataplane: &fakeDataplane{}, Members: &fakeMembers{}})
	if err != nil {
		b.Fatal(err)
	}
	for n := 1; n <= 19; n++ {
		name := fmt.Sprintf("n%02d", n)
		ns := &netState{Network: api.Network{Name: name, Subnet: fmt.Sprintf("10.%d.0.0/16", n), Gateway: fmt.Sprintf("10.%d.0.1", n), VNI: uint32(1000 + n)},
			Local:  map[string]localEndpoint{"c": {Container: "c", Netns: "/c", IfName: "eth0", IP: fmt.Sprintf("10.%d.0.2", n)}},
			Remote: map[string]api.Endpoint{}, caughtUp: true}
		for i := range 3000 {
			host := fmt.Sprint("h", i%300)
			ns.Remote[remoteKey(host, fmt.Sprint("c", i))] = api.Endpoint{Host: host, Container: fmt.Sprint("c", i),
				IP: fmt.Sprintf("10.%d.%d.%d", n, (10+i)>>8, (10+i)&255), VTEP: fmt.Sprintf("192.168.%d.%d", 78+i%300/200, 1+i%300%200)}
		}
		d.st.Networks[name] = ns
	}
	b.Run("all", func(b *testing.B) {
		for range b.N {
			if s := d.desired(); len(s.Networks) != 19 {
				b.Fatal(len(s.Networks))
			}
		}
	})
	b.Run("network", func(b *testing.B) {
		for range b.N {
			if s := d.desiredNetworks([]string{"n01"}); len(s.Networks) != 1 || len(s.Networks[0].Peers) != 3000 {
				b.Fatal(len(s.Networks))
			}
		}
	})
}
