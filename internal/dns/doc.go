// Package dns is the agent's embedded name service: one resolver per host that answers, inside the
// network namespace of every container on a user-defined network, at 127.0.0.11:53 (UDP and TCP).
//
// A Table holds the names of the endpoints this host knows: its own containers (bridge and overlay) and
// the overlay endpoints of other hosts, which arrive with the endpoint records the controller streams.
// Each network's index (lowercase name -> addresses, address -> names) is updated in place by writers,
// for the names of the record they change; queries read it under a read lock.
//
// A Server listens in each container's namespace (a socket opened in a namespace stays there, so one
// process serves them all and no NAT is involved: glibc's parallel A and AAAA queries from one socket
// cannot race in conntrack); the socket a query arrives on tells which container asks, and so which
// networks its answers may come from. Names it does not hold are forwarded, from the agent's own
// namespace, to the container's upstream resolvers (--dns, or the host's), over UDP and then TCP when
// truncated. See Server for what is answered how.
//
// Invariants and contract for the caller:
//   - Add a container before its process starts (its first query must find the resolver), and Remove
//     it when it stops: an open socket keeps its network namespace alive.
//   - Add is idempotent: adding a served container again updates its networks, upstreams and
//     forwarding; a new Server (an agent restart) re-opens sockets in existing namespaces.
//   - Answers come only from the networks of the asking container (isolation); NXDOMAIN for unknown
//     single-label names and SERVFAIL for NoForward clients are decided locally, with nothing sent.
//   - Forwarded queries are bounded host-wide (Config.MaxInflight) and in time (Config.Timeout); a
//     problem is logged once a minute per kind, never per query.
//
// UDP is served with recvmmsg/sendmmsg on two SO_REUSEPORT sockets per container, with pooled buffers
// (an idle container holds none), and plain queries for table names are parsed and answered without
// allocation; everything else goes through github.com/miekg/dns.
//
// See docs/dns.md.
package dns
