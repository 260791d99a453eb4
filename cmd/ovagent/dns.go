package main

import (
	"log/slog"
	"os"

	"github.com/ovnet/ov/internal/agent"
	"github.com/ovnet/ov/internal/dns"
)

// nameService makes the host's name service (docs/dns.md) and gives it to the agent's configuration:
// one table (the agent adds its containers' names, the overlay driver those of other hosts'
// endpoints) and one resolver answering from it in every container on a user-defined network,
// forwarding to the nameservers of the host's resolv.conf. The caller closes the resolver.
func nameService(cfg *agent.Config, log *slog.Logger) *dns.Server {
	names := dns.NewTable()
	hostResolv, err := os.ReadFile(cfg.HostResolvConf)
	if err != nil {
		log.Warn("read the host's resolv.conf: containers' names outside the cluster will not resolve", "path", cfg.HostResolvConf, "err", err)
	}
	resolver := dns.NewServer(names, dns.Config{Upstreams: dns.HostUpstreams(hostResolv), Log: log})
	cfg.Resolver, cfg.Names = resolver, names
	return resolver
}
