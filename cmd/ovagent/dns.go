package main

import (
	"log/slog"
	"net/netip"
	"os"

	"github.com/ovnet/ov/internal/agent"
	"github.com/ovnet/ov/internal/dns"
)

// resolvedConf is where systemd-resolved lists the servers behind its stub at 127.0.0.53.
const resolvedConf = "/run/systemd/resolve/resolv.conf"

// nameService makes the host's name service (docs/dns.md) and gives it to the agent's configuration:
// one table (the agent adds its containers' names, the overlay driver those of other hosts'
// endpoints) and one resolver answering from it in every container on a user-defined network,
// forwarding to the host's nameservers (hostUpstreams). The caller closes the resolver.
func nameService(cfg *agent.Config, log *slog.Logger) *dns.Server {
	names := dns.NewTable()
	ups := hostUpstreams(cfg.HostResolvConf, resolvedConf, log)
	resolver := dns.NewServer(names, dns.Config{Upstreams: ups, Log: log})
	cfg.Resolver, cfg.Names = resolver, names
	return resolver
}

// hostUpstreams returns the servers containers' outside names are forwarded to: the host's
// resolv.conf nameservers that are not loopback addresses; when it names only loopback ones (a local
// stub such as systemd-resolved's 127.0.0.53), the servers behind the stub (resolvedConf), as Docker
// does; failing that, the loopback ones themselves: the resolver forwards from the host's namespace,
// where they answer.
func hostUpstreams(path, stubConf string, log *slog.Logger) []netip.AddrPort {
	hostResolv, err := os.ReadFile(path)
	if err != nil {
		log.Warn("read the host's resolv.conf: containers' names outside the cluster will not resolve", "path", path, "err", err)
		return nil
	}
	if ups := dns.HostUpstreams(hostResolv); len(ups) > 0 {
		return ups
	}
	all := dns.Nameservers(hostResolv)
	if len(all) == 0 {
		log.Warn("the host's resolv.conf names no nameserver: containers' names outside the cluster will not resolve", "path", path)
		return nil
	}
	if b, err := os.ReadFile(stubConf); err == nil {
		if ups := dns.HostUpstreams(b); len(ups) > 0 {
			return ups
		}
	}
	var loop []netip.AddrPort
	for _, a := range all {
		loop = append(loop, netip.AddrPortFrom(a, dns.Port))
	}
	return loop
}
