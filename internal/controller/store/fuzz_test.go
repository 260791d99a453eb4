package store

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// FuzzRecord: no key or value read from etcd (a corrupt record, a key the schema does not know)
// makes the record decoding panic; a key is classified so that the key it names is the same key; and
// a value that does not decode is an error naming the record, never a zero value taken for data.
func FuzzRecord(f *testing.F) {
	for _, s := range []struct{ key, val string }{
		{"/ov/v1/networks/front", `{"name":"front","driver":"overlay","subnet":"10.1.0.0/24","vni":4097}`},
		{"/ov/v1/networks/bad", `{"name":"bad","subnet":"10.1.0.0/33"}`},
		{"/ov/v1/networks/odd", `{"name":"odd","subnet":"10.1.0.0/24","gateway":"10.2.0.1","ipRange":"10.1.0.0/30"}`},
		{"/ov/v1/hosts/h1", `{"name":"h1","address":"192.168.1.2","tokenHash":"x"}`},
		{"/ov/v1/endpoints/front/10.1.0.5", `{"network":"front","host":"h1","container":"c","ip":"10.1.0.5"}`},
		{"/ov/v1/endpoints/front/::ffff:10.1.0.5", `{}`},
		{"/ov/v1/endpoints/a/b/fe80::1%eth0", `null`},
		{"/ov/v1/cursors/front", `10.1.0.9`},
		{"/ov/v1/owners/front/h1/c", `10.1.0.5`},
		{"/ov/v1/endpoints/x", ``},
	} {
		f.Add(s.key, []byte(s.val), int64(3), true)
	}
	f.Fuzz(func(t *testing.T, key string, val []byte, rev int64, hasValue bool) {
		kv := &mvccpb.KeyValue{Key: []byte(key), Value: val, ModRevision: rev, CreateRevision: rev / 2}
		var r Record
		if hasValue {
			r = newRecord(kv, kv)
		} else {
			r = newRecord(kv, nil)
		}
		if r.Key != key || r.Revision != rev {
			t.Fatalf("record of %q rev %d says key %q rev %d", key, rev, r.Key, r.Revision)
		}
		var err error
		switch r.Kind {
		case KindNetwork:
			if networkKey(r.Name) != key {
				t.Fatalf("network key %q parsed as network %q", key, r.Name)
			}
			var n Network
			n, err = r.Network()
			rg := n.Range
			if err == nil && (n.Revision != rev || !rg.Subnet.Contains(rg.First) || !rg.Subnet.Contains(rg.Last) ||
				!rg.Subnet.Contains(rg.Gateway) || rg.Last.Less(rg.First)) {
				t.Fatalf("network record %q decoded to a range outside its subnet (or no revision): %+v", key, n)
			}
		case KindHost:
			if hostKey(r.Name) != key {
				t.Fatalf("host key %q parsed as host %q", key, r.Name)
			}
			_, err = r.Host()
		case KindEndpoint:
			if !r.IP.IsValid() || endpointKey(r.Name, r.IP) != key {
				t.Fatalf("endpoint key %q parsed as network %q address %v, which is key %q", key, r.Name, r.IP, endpointKey(r.Name, r.IP))
			}
			_, err = r.Endpoint()
		case KindCursor:
			if cursorKey(r.Name) != key {
				t.Fatalf("cursor key %q parsed as network %q", key, r.Name)
			}
			_, err = r.Cursor()
		case KindOther:
			return
		default:
			t.Fatalf("key %q: unknown kind %v", key, r.Kind)
		}
		if !hasValue && (err == nil || r.HasValue()) {
			t.Fatalf("record %q without a value decoded: %v", key, err)
		}
		if err != nil && errors.Unwrap(err) == nil && err.Error() == "" {
			t.Fatalf("record %q: empty error", key)
		}
	})
}
