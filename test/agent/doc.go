// Package agent holds the privileged end-to-end tests of ovagent and ovctl: each test builds the
// binaries, starts a real ovagent inside a fresh network namespace that plays the host (state and
// run directories in a temporary directory), drives it with the real ovctl, and checks after every
// test that no mount, cgroup, veth, address or iptables rule of its containers is left.
package agent
