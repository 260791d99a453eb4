// Package vxlantest holds helpers for privileged tests and benchmarks of package vxlan: Lab, a
// multi-host underlay made of network namespaces, and ICMP ping from inside a namespace.
package vxlantest
