package main

import (
	"fmt"
	"slices"
)

// chooseSample picks the k hosts that run the real driver when the others are light: k hosts spread
// evenly when they serve every network between them; else first, greedily,
// hosts that serve networks no chosen host serves yet (so that every network has a sampled host,
// the tenth-of-the-hosts networks included), then hosts spread evenly over the rest, so that the
// sample also holds hosts serving the same networks (the probes need two on a network). It fails when
// k hosts cannot cover every network, naming how many can.
func chooseSample(l layout, k int) ([]int, error) {
	if even := spread(len(l.onHost), k); covers(l, even) {
		return even, nil // at the layouts: every tenth-of-the-hosts network gets k/10 of them
	}
	hosts := len(l.onHost)
	chosen := map[int]bool{}
	covered := make([]bool, len(l.names))
	uncovered := 0
	for n := range l.names {
		if l.total[n] > 0 {
			uncovered++
		} else {
			covered[n] = true
		}
	}
	for uncovered > 0 {
		best, bestN := -1, 0
		for h := range hosts {
			c := 0
			for _, n := range l.onHost[h] {
				if !covered[n] {
					c++
				}
			}
			if c > bestN {
				best, bestN = h, c
			}
		}
		if best < 0 {
			break
		}
		chosen[best] = true
		for _, n := range l.onHost[best] {
			if !covered[n] {
				covered[n] = true
				uncovered--
			}
		}
	}
	if len(chosen) > k {
		return nil, fmt.Errorf("-sample %d: every network needs a sampled host serving it, and that takes %d hosts in this layout; give -sample %d or more", k, len(chosen), len(chosen))
	}
	for i := 0; len(chosen) < k; i++ {
		h := (i * hosts / k) % hosts
		for chosen[h] {
			h = (h + 1) % hosts
		}
		chosen[h] = true
	}
	out := make([]int, 0, k)
	for h := range chosen {
		out = append(out, h)
	}
	slices.Sort(out)
	return out, nil
}

// spread is k of hosts spread evenly.
func spread(hosts, k int) []int {
	out := make([]int, k)
	for i := range k {
		out[i] = i * hosts / k
	}
	return out
}

// covers reports whether every network with endpoints has one on a host of sample.
func covers(l layout, sample []int) bool {
	in := make([]bool, len(l.onHost))
	for _, h := range sample {
		in[h] = true
	}
	for n := range l.names {
		if l.total[n] > 0 && len(l.servingOf(n, -1, in)) == 0 {
			return false
		}
	}
	return true
}
