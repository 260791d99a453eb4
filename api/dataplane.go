package api

import (
	"fmt"

	"github.com/ovnet/ov/internal/errdefs"
)

// States of a host's data plane (Host.Dataplane).
const (
	DataplaneReachable   = "reachable"
	DataplaneUnreachable = "unreachable"
)

// MaxDataplaneReport bounds how many hosts one report names.
const MaxDataplaneReport = 4096

// DataplaneReport is what an agent tells the controller about the data plane (PUT
// /v1/hosts/{name}/dataplane): the hosts it currently finds unreachable, that is whose agent is silent
// and whose kernel does not answer its probes, so it withdrew their entries. An agent sends it when
// the set changes and renews it while it is not empty; an empty set clears it.
type DataplaneReport struct {
	Unreachable []string `json:"unreachable"`
}

// Validate checks a report.
func (r *DataplaneReport) Validate() error {
	if len(r.Unreachable) > MaxDataplaneReport {
		return fmt.Errorf("data plane report names %d hosts, at most %d: %w", len(r.Unreachable), MaxDataplaneReport, errdefs.ErrInvalidArgument)
	}
	for _, h := range r.Unreachable {
		if !ValidName(h) {
			return fmt.Errorf("data plane report: host name %q: use 1-63 letters, digits, '_', '.' or '-': %w", h, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
