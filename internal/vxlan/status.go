package vxlan

import (
	"cmp"
	"slices"
	"time"
)

// Status is what the data plane made of the desired state at the last reconcile: per network, what
// is programmed and which entries are left out and why. The counters count from New.
type Status struct {
	Reconciles uint64 // reconciles done
	Failed     uint64 // reconciles that returned an error (kernel or iptables; left-out entries are no error)
	Changes    uint64 // kernel and firewall changes made, repairs included
	Repairs    uint64 // changes that repaired drift: see Reconciled.Repairs
	// Partial counts the reconciles (among Reconciles) of the networks a KickNetwork named alone;
	// NetworksReconciled the networks all reconciles programmed, one per network per reconcile.
	Partial            uint64
	NetworksReconciled uint64
	ProblemsDetected   uint64          // problems that appeared, each counted once per appearance (all networks)
	Error              string          // the last reconcile's error; "" when it succeeded
	Networks           []NetworkStatus // every network of the last desired state, by name
}

// NetworkStatus is the data plane of one network on this host.
type NetworkStatus struct {
	Name             string
	VNI              uint32
	Active           bool // set up on this host: well formed, with local containers (Error says when that failed)
	Endpoints        int  // local containers programmed
	Peers            int  // remote peers programmed (ARP and FDB entries)
	VTEPs            int  // other hosts programmed (flood entries, ingress filter)
	Problems         []ProblemStatus
	ProblemsDetected uint64 // problems of this network that appeared, each counted once per appearance
	Error            string // the last reconcile's error for this network; "" when none
}

// ProblemStatus is a left-out entry and since when it has been left out.
type ProblemStatus struct {
	Problem
	Since time.Time
}

// Status returns a copy of the status the last reconcile left.
func (d *Driver) Status() Status {
	d.smu.Lock()
	defer d.smu.Unlock()
	st := d.status
	st.ProblemsDetected = d.detectedTotal
	st.Networks = slices.Clone(st.Networks)
	for i := range st.Networks {
		st.Networks[i].Problems = slices.Clone(st.Networks[i].Problems)
		st.Networks[i].ProblemsDetected = d.detected[st.Networks[i].Name]
	}
	return st
}

// noteProblems remembers the problems of this reconcile, logs those that are new (once, not at every
// reconcile) and those that went away, and counts the new ones. A reconcile of the networks only
// (partial.go) replaces theirs and keeps the others'; nil only: all networks.
func (d *Driver) noteProblems(probs []Problem, only []string) {
	d.smu.Lock()
	defer d.smu.Unlock()
	now := time.Now()
	next := make(map[Problem]time.Time, len(probs))
	if only != nil {
		for p, since := range d.problems {
			if !slices.Contains(only, p.Network) {
				next[p] = since
			}
		}
	}
	for _, p := range probs {
		if _, ok := next[p]; ok {
			continue
		}
		if since, ok := d.problems[p]; ok {
			next[p] = since
			continue
		}
		next[p] = now
		if d.detected == nil {
			d.detected = map[string]uint64{}
		}
		d.detected[p.Network]++
		d.detectedTotal++
		d.log.Warn("entry left out of the data plane; the rest of the network is programmed", "network", p.Network, "kind", p.Kind, "entry", p.Entry, "reason", p.Reason)
	}
	for p := range d.problems {
		if _, ok := next[p]; !ok && (only == nil || slices.Contains(only, p.Network)) {
			d.log.Info("problem gone: entry programmed or no longer asked for", "network", p.Network, "kind", p.Kind, "entry", p.Entry)
		}
	}
	d.problems = next
}

// recordStatus keeps the status of a reconcile of desired (as given, networks left out whole
// included) that set up the networks active (lite: their liteOf), with per-network errors netErrs
// and overall error err.
func (d *Driver) recordStatus(desired State, active, lite []NetworkState, netErrs map[string]error, err error) {
	d.smu.Lock()
	defer d.smu.Unlock()
	st := Status{Reconciles: d.status.Reconciles + 1, Failed: d.status.Failed, Changes: d.status.Changes, Repairs: d.status.Repairs,
		Partial: d.status.Partial, NetworksReconciled: d.status.NetworksReconciled}
	if err != nil {
		st.Failed++
		st.Error = err.Error()
	}
	byName := map[string]int{}
	for _, ns := range desired.Networks {
		if _, ok := byName[ns.Network.Name]; !ok {
			byName[ns.Network.Name] = len(st.Networks)
			st.Networks = append(st.Networks, NetworkStatus{Name: ns.Network.Name, VNI: ns.Network.VNI})
		}
	}
	for k, ns := range active {
		if i, ok := byName[ns.Network.Name]; ok {
			n := &st.Networks[i]
			n.Active, n.Endpoints, n.Peers, n.VTEPs = true, len(ns.Endpoints), len(ns.Peers), len(lite[k].VTEPs)
			if e := netErrs[ns.Network.Name]; e != nil {
				n.Error = e.Error()
			}
		}
	}
	for p, since := range d.problems {
		if i, ok := byName[p.Network]; ok {
			st.Networks[i].Problems = append(st.Networks[i].Problems, ProblemStatus{Problem: p, Since: since})
		}
	}
	for i := range st.Networks {
		slices.SortFunc(st.Networks[i].Problems, func(a, b ProblemStatus) int {
			return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Entry, b.Entry), cmp.Compare(a.Reason, b.Reason))
		})
	}
	slices.SortFunc(st.Networks, func(a, b NetworkStatus) int { return cmp.Compare(a.Name, b.Name) })
	d.status = st
}
