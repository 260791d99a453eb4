// Package spoof is the attacker's toolkit of ov's attack tests: it builds the frames a process in a
// container crafts (Ethernet, ARP, IPv4 with TCP or UDP), sends them on an AF_PACKET socket and
// watches for answers, and runs code as a container's root does: on an OS thread of its own, inside
// the container's network namespace, with only the container's capabilities. Nothing in ov's daemons
// uses it; it lives beside the bridge driver whose protections it attacks.
//
// Files: spoof.go (frames, the AF_PACKET socket, ARP), as.go (running as a container's root).
package spoof
