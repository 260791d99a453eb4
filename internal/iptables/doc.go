// Package iptables is ov's narrow seam over the iptables command: the handful of calls ov makes
// (Client, satisfied by *github.com/coreos/go-iptables/iptables.IPTables), a Fake that keeps tables in
// memory and renders them as iptables-save-like text for tests, and the two level-triggered helpers the
// network drivers build on:
//
//   - SyncChain makes a chain ov owns hold exactly a given list of rules, in order, creating the chain if
//     needed, with the fewest edits a single pass finds. A rule that replaces another is inserted before
//     the old one is deleted, so traffic both accept is never dropped in between. Running it twice
//     changes nothing.
//   - EnsureJump puts a jump from a built-in chain to an ov chain at the top of the built-in chain, once.
//
// Invariants: ov adds rules only to chains it owns; a built-in chain (FORWARD, POSTROUTING, ...) gets only
// jump rules. Rules are written in the canonical form `iptables -S` prints (for example
// "-p tcp -m tcp --dport 80", "-d 10.0.0.2/32"), so that comparing the listed rules with the wanted ones
// detects "nothing to do" without running iptables -C for each rule. Rules carry no quoted arguments.
//
// Every call runs the iptables binary found on PATH in the network namespace of the calling process.
package iptables
