package store

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
)

// SetEndpointNames replaces the DNS names of the endpoint (network, host, container) holds, with a
// compare-and-swap on its record (the owner key must still point at it). The caller validates the
// names. Setting the names it has writes nothing. An owner that holds nothing is ErrNotFound.
func (s *Store) SetEndpointNames(ctx context.Context, network, host, container string, names []string) (api.Endpoint, error) {
	ok := ownerKey(network, host, container)
	what := fmt.Sprintf("set the names of %s on %s in network %q", container, host, network)
	for attempt := 0; attempt < maxRetries; attempt++ {
		ctx2, cancel := s.timeout(ctx)
		resp, err := s.cli.Get(ctx2, ok)
		cancel()
		if err != nil {
			return api.Endpoint{}, s.wrap(what, err)
		}
		if len(resp.Kvs) == 0 {
			return api.Endpoint{}, fmt.Errorf("%s: the container holds no address there; attach it first: %w", what, errdefs.ErrNotFound)
		}
		ip, err := netip.ParseAddr(string(resp.Kvs[0].Value))
		if err != nil {
			return api.Endpoint{}, fmt.Errorf("store: corrupt owner record %s: %v", ok, err)
		}
		ownerRev := resp.Kvs[0].ModRevision
		ek := endpointKey(network, ip)
		ctx2, cancel = s.timeout(ctx)
		resp, err = s.cli.Get(ctx2, ek)
		cancel()
		if err != nil {
			return api.Endpoint{}, s.wrap(what, err)
		}
		if len(resp.Kvs) == 0 {
			continue // released meanwhile: the owner key tells
		}
		ep, err := decodeEndpoint(resp.Kvs[0])
		if err != nil {
			return api.Endpoint{}, err
		}
		if ep.Host != host || ep.Container != container {
			continue // the address changed hands meanwhile
		}
		if slices.Equal(ep.Names, names) || len(ep.Names) == 0 && len(names) == 0 {
			return ep, nil
		}
		ep.Names = names
		ctx2, cancel = s.timeout(ctx)
		tr, err := s.cli.Txn(ctx2).If(
			clientv3.Compare(clientv3.ModRevision(ok), "=", ownerRev),
			clientv3.Compare(clientv3.ModRevision(ek), "=", resp.Kvs[0].ModRevision),
		).Then(clientv3.OpPut(ek, encodeEndpoint(ep))).Commit()
		cancel()
		if err != nil {
			return api.Endpoint{}, s.wrap(what, err)
		}
		if tr.Succeeded {
			ep.Revision = tr.Header.Revision
			return ep, nil
		}
	}
	return api.Endpoint{}, fmt.Errorf("%s: the endpoint keeps changing; retry: %w", what, errdefs.ErrConflict)
}
