package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/ipam"
)

// Network is a network as stored, with the revision that guards allocations in it.
type Network struct {
	api.Network
	// CreateRevision identifies this incarnation of the network: an allocation compares it, so that an
	// address cannot be allocated in a network that was deleted (and perhaps recreated) meanwhile.
	CreateRevision int64 `json:"-"`
	// Range is the parsed subnet, gateway and ip-range.
	Range ipam.Range `json:"-"`
}

// Pools are the defaults a network create draws from when the request leaves subnet or VNI empty.
type Pools struct {
	Subnet     netip.Prefix // e.g. 10.128.0.0/9
	SubnetBits int          // size of each carved subnet, e.g. 24
	VNIMin     uint32       // e.g. 4096
	VNIMax     uint32       // e.g. 16777215
}

// maxRetries bounds the optimistic retries of one operation that keeps losing races.
const maxRetries = 64

func decodeNetwork(kv *mvccpb.KeyValue) (Network, error) {
	var n Network
	if err := json.Unmarshal(kv.Value, &n.Network); err != nil {
		return Network{}, fmt.Errorf("store: corrupt network record: %v", err)
	}
	n.Revision, n.CreateRevision = kv.ModRevision, kv.CreateRevision
	r, err := ipam.ParseRange(n.Subnet, n.Gateway, n.IPRange)
	if err != nil {
		return Network{}, fmt.Errorf("store: network %q has a bad range: %v", n.Name, err)
	}
	n.Range = r
	return n, nil
}

func encodeNetwork(n api.Network) string {
	n.Revision = 0
	n.Dataplane = nil // a host's view (agent inspect), never the cluster's record
	b, _ := json.Marshal(n)
	return string(b)
}

// CreateNetwork creates an overlay network. Subnet and VNI are picked from pools when the request
// leaves them empty. The transaction compares the network-set version it read, so two concurrent creates
// of overlapping subnets (or the same VNI, or the same name) cannot both succeed.
func (s *Store) CreateNetwork(ctx context.Context, req api.Network, pools Pools) (Network, error) {
	for attempt := 0; attempt < maxRetries; attempt++ {
		ctx2, cancel := s.timeout(ctx)
		resp, err := s.cli.Txn(ctx2).Then(
			clientv3.OpGet(networksPfx, clientv3.WithPrefix()),
			clientv3.OpGet(netsetKey),
			clientv3.OpGet(vniCursorKey),
		).Commit()
		cancel()
		if err != nil {
			return Network{}, s.wrap(fmt.Sprintf("create network %q", req.Name), err)
		}
		var existing []Network
		for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
			n, err := decodeNetwork(kv)
			if err != nil {
				return Network{}, err
			}
			existing = append(existing, n)
		}
		var netsetRev int64
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			netsetRev = kvs[0].ModRevision
		}
		var vniCursor uint32
		if kvs := resp.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
			v, _ := strconv.ParseUint(string(kvs[0].Value), 10, 32)
			vniCursor = uint32(v)
		}
		n, err := planNetwork(req, existing, vniCursor, pools)
		if err != nil {
			return Network{}, err
		}
		ops := []clientv3.Op{
			clientv3.OpPut(networkKey(n.Name), encodeNetwork(n)),
			clientv3.OpPut(vniKey(n.VNI), n.Name),
			clientv3.OpPut(netsetKey, n.Name),
		}
		if req.VNI == 0 {
			ops = append(ops, clientv3.OpPut(vniCursorKey, strconv.FormatUint(uint64(n.VNI), 10)))
		}
		ctx2, cancel = s.timeout(ctx)
		tr, err := s.cli.Txn(ctx2).If(
			clientv3.Compare(clientv3.ModRevision(netsetKey), "=", netsetRev),
			clientv3.Compare(clientv3.CreateRevision(networkKey(n.Name)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(vniKey(n.VNI)), "=", 0),
		).Then(ops...).Commit()
		cancel()
		if err != nil {
			return Network{}, s.wrap(fmt.Sprintf("create network %q", req.Name), err)
		}
		if tr.Succeeded {
			out := Network{Network: n, CreateRevision: tr.Header.Revision}
			out.Revision = tr.Header.Revision
			out.Range, _ = ipam.ParseRange(n.Subnet, n.Gateway, n.IPRange)
			return out, nil
		}
		// Someone changed the set of networks meanwhile: plan again against the new set, which
		// reports a duplicate name, an overlap or a taken VNI if that is what happened.
	}
	return Network{}, fmt.Errorf("create network %q: lost %d races in a row against other network changes; retry: %w", req.Name, maxRetries, errdefs.ErrConflict)
}

// planNetwork fills in what req leaves empty and checks it against the existing networks.
func planNetwork(req api.Network, existing []Network, vniCursor uint32, pools Pools) (api.Network, error) {
	n := req
	var subnets []netip.Prefix
	taken := map[uint32]string{}
	for _, e := range existing {
		if e.Name == n.Name {
			return api.Network{}, fmt.Errorf("network %q already exists; choose another name or remove it first: %w", n.Name, errdefs.ErrAlreadyExists)
		}
		subnets = append(subnets, e.Range.Subnet)
		taken[e.VNI] = e.Name
	}
	if n.Subnet != "" {
		p, err := netip.ParsePrefix(n.Subnet)
		if err != nil {
			return api.Network{}, fmt.Errorf("network %q: subnet %q is not a CIDR: %w", n.Name, n.Subnet, errdefs.ErrInvalidArgument)
		}
		for _, e := range existing {
			if ipam.Overlaps(p, e.Range.Subnet) {
				return api.Network{}, fmt.Errorf("network %q: subnet %s overlaps network %q (%s); choose another subnet: %w", n.Name, p, e.Name, e.Range.Subnet, errdefs.ErrConflict)
			}
		}
	} else {
		p, err := ipam.PickSubnet(pools.Subnet, pools.SubnetBits, subnets)
		if err != nil {
			return api.Network{}, fmt.Errorf("network %q: %w", n.Name, err)
		}
		n.Subnet = p.String()
	}
	r, err := ipam.ParseRange(n.Subnet, n.Gateway, n.IPRange)
	if err != nil {
		return api.Network{}, fmt.Errorf("network %q: %w", n.Name, err)
	}
	n.Gateway = r.Gateway.String()
	if n.VNI != 0 {
		if other, ok := taken[n.VNI]; ok {
			return api.Network{}, fmt.Errorf("network %q: VNI %d is used by network %q; choose another VNI or leave it out: %w", n.Name, n.VNI, other, errdefs.ErrConflict)
		}
	} else {
		v, err := ipam.NextVNI(vniCursor, pools.VNIMin, pools.VNIMax, func(v uint32) bool { _, ok := taken[v]; return ok })
		if err != nil {
			return api.Network{}, fmt.Errorf("network %q: %w", n.Name, err)
		}
		n.VNI = v
	}
	n.ID = newID()
	n.Created = time.Now().UTC().Truncate(time.Millisecond)
	n.Revision = 0
	return n, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// GetNetwork reads one network.
func (s *Store) GetNetwork(ctx context.Context, name string) (Network, error) {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, networkKey(name))
	if err != nil {
		return Network{}, s.wrap(fmt.Sprintf("get network %q", name), err)
	}
	if len(resp.Kvs) == 0 {
		return Network{}, notFoundNetwork(name)
	}
	kv := resp.Kvs[0]
	return decodeNetwork(kv)
}

func notFoundNetwork(name string) error {
	return fmt.Errorf("network %q does not exist; see ovctl network ls: %w", name, errdefs.ErrNotFound)
}

// ListNetworks reads every network, sorted by name.
func (s *Store) ListNetworks(ctx context.Context) ([]Network, error) {
	return list(ctx, s, "list networks", networksPfx, decodeNetwork, func(n Network) string { return n.Name })
}

// UpdateNetwork changes the mutable fields of a network: labels, MTU and internal. With
// req.Revision != 0 it is a compare-and-swap: a network changed since that revision is ErrConflict.
// Subnet, gateway, ip-range, VNI and driver cannot change (ErrInvalidArgument) but may be repeated.
func (s *Store) UpdateNetwork(ctx context.Context, req api.Network) (Network, error) {
	for attempt := 0; attempt < maxRetries; attempt++ {
		cur, err := s.GetNetwork(ctx, req.Name)
		if err != nil {
			return Network{}, err
		}
		if req.Revision != 0 && req.Revision != cur.Revision {
			return Network{}, fmt.Errorf("network %q changed since revision %d (now %d); read it again and retry: %w", req.Name, req.Revision, cur.Revision, errdefs.ErrConflict)
		}
		for _, f := range []struct{ name, got, have string }{
			{"driver", req.Driver, cur.Driver},
			{"subnet", req.Subnet, cur.Subnet},
			{"gateway", req.Gateway, cur.Gateway},
			{"ip-range", req.IPRange, cur.IPRange},
			{"vni", vniString(req.VNI), vniString(cur.VNI)},
		} {
			if f.got != "" && f.got != f.have {
				return Network{}, fmt.Errorf("network %q: %s cannot change (%s -> %s); remove and recreate the network: %w", req.Name, f.name, f.have, f.got, errdefs.ErrInvalidArgument)
			}
		}
		if req.Encrypted != cur.Encrypted {
			return Network{}, fmt.Errorf("network %q: encrypted cannot change (%t -> %t): an encrypted network's containers would talk in clear, or a plain one's lose their peers, for as long as hosts disagree; remove and recreate the network: %w", req.Name, cur.Encrypted, req.Encrypted, errdefs.ErrInvalidArgument)
		}
		next := cur.Network
		next.Labels, next.MTU, next.Internal = req.Labels, req.MTU, req.Internal
		ctx2, cancel := s.timeout(ctx)
		tr, err := s.cli.Txn(ctx2).If(
			clientv3.Compare(clientv3.ModRevision(networkKey(req.Name)), "=", cur.Revision),
		).Then(clientv3.OpPut(networkKey(req.Name), encodeNetwork(next))).Commit()
		cancel()
		if err != nil {
			return Network{}, s.wrap(fmt.Sprintf("update network %q", req.Name), err)
		}
		if tr.Succeeded {
			out := cur
			out.Network = next
			out.Revision = tr.Header.Revision
			return out, nil
		}
	}
	return Network{}, fmt.Errorf("update network %q: it keeps changing; retry: %w", req.Name, errdefs.ErrConflict)
}

func vniString(v uint32) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(v), 10)
}

// DeleteNetwork removes a network and frees its subnet and VNI. A network with endpoints is refused
// (ErrConflict) unless force, which releases them in the same transaction.
func (s *Store) DeleteNetwork(ctx context.Context, name string, force bool) error {
	for attempt := 0; attempt < maxRetries; attempt++ {
		cur, err := s.GetNetwork(ctx, name)
		if err != nil {
			return err
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(networkKey(name)), "=", cur.Revision)}
		if !force {
			// True only when no key exists under the prefix.
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(endpointsPrefix(name)), "=", 0).WithPrefix())
		}
		ctx2, cancel := s.timeout(ctx)
		tr, err := s.cli.Txn(ctx2).If(cmps...).Then(
			clientv3.OpDelete(networkKey(name)),
			clientv3.OpDelete(vniKey(cur.VNI)),
			clientv3.OpDelete(endpointsPrefix(name), clientv3.WithPrefix()),
			clientv3.OpDelete(ownersPrefix(name), clientv3.WithPrefix()),
			clientv3.OpDelete(cursorKey(name)),
			clientv3.OpPut(netsetKey, name),
		).Else(
			clientv3.OpGet(networkKey(name), clientv3.WithKeysOnly()),
			clientv3.OpGet(endpointsPrefix(name), clientv3.WithPrefix(), clientv3.WithLimit(5)),
			clientv3.OpGet(endpointsPrefix(name), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		).Commit()
		cancel()
		if err != nil {
			return s.wrap(fmt.Sprintf("remove network %q", name), err)
		}
		if tr.Succeeded {
			return nil
		}
		nk := tr.Responses[0].GetResponseRange().Kvs
		if len(nk) == 0 {
			return notFoundNetwork(name)
		}
		if !force && nk[0].ModRevision == cur.Revision {
			count := tr.Responses[2].GetResponseRange().Count
			var some []string
			for _, kv := range tr.Responses[1].GetResponseRange().Kvs {
				var ep api.Endpoint
				if json.Unmarshal(kv.Value, &ep) == nil {
					some = append(some, fmt.Sprintf("%s on %s (%s)", ep.Container, ep.Host, ep.IP))
				}
			}
			return fmt.Errorf("network %q has %d endpoints, e.g. %v; remove those containers first or force the removal: %w", name, count, some, errdefs.ErrConflict)
		}
	}
	return fmt.Errorf("remove network %q: it keeps changing; retry: %w", name, errdefs.ErrConflict)
}
