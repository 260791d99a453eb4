// Package dns is the agent's embedded name service: one resolver per host that answers, inside the
// network namespace of every container on a user-defined network, at 127.0.0.11:53 (UDP and TCP).
//
// A Table holds the names of the endpoints this host knows: its own containers (bridge and overlay) and
// the overlay endpoints of other hosts, which arrive with the endpoint records the controller streams.
// A Server listens in each container's namespace (a socket opened in a namespace stays there, so one
// process serves them all and no NAT is involved); the socket a query arrives on tells which container
// asks, and so which networks its answers may come from. Names it does not hold are forwarded to the
// container's upstream resolvers (--dns, or the host's), over UDP and then TCP when truncated.
//
// See docs/dns.md.
package dns
