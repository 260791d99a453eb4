package store

import (
	"fmt"
	"net/netip"
	"strings"
)

// The key schema, version 1. This file is the only place that knows it; docs/controller.md mirrors it.
//
//	/ov/v1/meta/netset                      network-set version: bumped by every network create/delete,
//	                                        compared by creates so that two overlapping subnets cannot both win
//	/ov/v1/meta/vnicursor                   last VNI handed out (next-fit over VNIs)
//	/ov/v1/networks/<name>                  JSON network (subnet, gateway, ip-range, VNI, MTU, labels...)
//	/ov/v1/vnis/<vni>                       name of the network holding the VNI
//	/ov/v1/hosts/<name>                     JSON host (underlay address, labels, registration time, token hash)
//	/ov/v1/alive/<name>                     time of the host's last recorded heartbeat, attached to an etcd
//	                                        lease (TTL: dead-after) a controller renews with each heartbeat:
//	                                        the host is alive while the key exists
//	/ov/v1/endpoints/<network>/<ip>         JSON endpoint: the allocation of one address
//	/ov/v1/owners/<network>/<host>/<ctr>    the address owned by (network, host, container)
//	/ov/v1/cursors/<network>                last address handed out in the network (next-fit cursor)
//	/ov/v1/dataplane/<host>                 JSON list of the hosts <host> finds unreachable on the data
//	                                        plane, under a lease its agent renews (dataplane.go)
//	/ov/v1/secrets/<name>                   controller secrets, opaque to the store: gossip (the gossip
//	                                        keyring), join (the join token and its expiry), hostkey (the
//	                                        key that signs host tokens)
const (
	root         = "/ov/v1/"
	netsetKey    = root + "meta/netset"
	vniCursorKey = root + "meta/vnicursor"
	networksPfx  = root + "networks/"
	vnisPfx      = root + "vnis/"
	hostsPfx     = root + "hosts/"
	alivePfx     = root + "alive/"
	endpointsPfx = root + "endpoints/"
	ownersPfx    = root + "owners/"
	cursorsPfx   = root + "cursors/"
	secretsPfx   = root + "secrets/"
	dataplanePfx = root + "dataplane/"
)

func networkKey(name string) string         { return networksPfx + name }
func vniKey(vni uint32) string              { return fmt.Sprintf("%s%d", vnisPfx, vni) }
func hostKey(name string) string            { return hostsPfx + name }
func aliveKey(name string) string           { return alivePfx + name }
func endpointsPrefix(network string) string { return endpointsPfx + network + "/" }
func endpointKey(network string, ip netip.Addr) string {
	return endpointsPrefix(network) + ip.String()
}
func ownersPrefix(network string) string           { return ownersPfx + network + "/" }
func hostOwnersPrefix(network, host string) string { return ownersPrefix(network) + host + "/" }
func ownerKey(network, host, container string) string {
	return hostOwnersPrefix(network, host) + container
}
func cursorKey(network string) string { return cursorsPfx + network }
func secretKey(name string) string    { return secretsPfx + name }

// KeyKind classifies the keys of the schema, for watchers (Watch, Record).
type KeyKind int

// Kinds of keys.
const (
	KindOther KeyKind = iota
	KindNetwork
	KindHost
	KindEndpoint
	KindCursor
	KindSecret
)

// String names the kind, for messages.
func (k KeyKind) String() string {
	switch k {
	case KindNetwork:
		return "network"
	case KindHost:
		return "host"
	case KindEndpoint:
		return "endpoint"
	case KindCursor:
		return "cursor"
	case KindSecret:
		return "secret"
	}
	return "other"
}

// kindPrefix is the prefix under which every key of kind lives ("" for KindOther).
func kindPrefix(kind KeyKind) string {
	switch kind {
	case KindNetwork:
		return networksPfx
	case KindHost:
		return hostsPfx
	case KindEndpoint:
		return endpointsPfx
	case KindCursor:
		return cursorsPfx
	case KindSecret:
		return secretsPfx
	}
	return ""
}

// parseKey tells what a key is: its kind, the network or host name, and for endpoints the address.
func parseKey(key string) (kind KeyKind, name string, ip netip.Addr) {
	switch {
	case strings.HasPrefix(key, networksPfx):
		return KindNetwork, key[len(networksPfx):], netip.Addr{}
	case strings.HasPrefix(key, hostsPfx):
		return KindHost, key[len(hostsPfx):], netip.Addr{}
	case strings.HasPrefix(key, cursorsPfx):
		return KindCursor, key[len(cursorsPfx):], netip.Addr{}
	case strings.HasPrefix(key, secretsPfx):
		return KindSecret, key[len(secretsPfx):], netip.Addr{}
	case strings.HasPrefix(key, endpointsPfx):
		rest := key[len(endpointsPfx):]
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			return KindOther, "", netip.Addr{}
		}
		a, err := netip.ParseAddr(rest[i+1:])
		if err != nil || a.String() != rest[i+1:] {
			// Not an address in the form endpointKey writes (e.g. "::0"): not a key of the schema.
			return KindOther, "", netip.Addr{}
		}
		return KindEndpoint, rest[:i], a
	}
	return KindOther, "", netip.Addr{}
}
