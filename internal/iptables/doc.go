// Package iptables is ov's one seam over the kernel's IPv4 firewall: a Client reads a whole table
// (iptables-save) and applies edits to it in one transaction (iptables-restore --noflush); *Tables
// runs those binaries, *Fake keeps tables in memory and renders them as iptables-save-like text for
// tests. Both network drivers converge their rules with Sync: given a table's desired part that ov owns
// (ov's chains with their rules, and the jumps into them from built-in chains), it reads the table
// once, computes the difference and, when there is one, applies it with one atomic restore.
//
// Invariants:
//   - ov adds rules only to chains it owns; a built-in chain (FORWARD, INPUT, POSTROUTING, ...) gets
//     only jump rules into ov's chains. Built-in chains are shared with Docker, firewalld and admins.
//   - Every rule ov writes carries a comment "ov:<chain>:<id>" (-m comment), where chain is the ov
//     chain the rule belongs to (the chain it is in, or the chain a jump enters) and id a hash of the
//     rule: Sync recognises ov's rules by that comment and compares them by it, never by the text
//     iptables prints for them. In a built-in chain, a rule without ov's comment is never touched,
//     except the exact untagged jump rules of the version before comments, which Sync deletes once
//     it has put the tagged ones in place (so an upgrade leaves no duplicates). In ov's own chains
//     every rule that is not wanted (untagged ones included) is deleted.
//   - A jump that is missing is inserted at the top of its built-in chain; one that is present is left
//     where it is (another program may have put a rule above it on purpose).
//
// Every call runs in the network namespace of the calling thread.
package iptables
