package overlay

import (
	"context"
	"slices"
	"time"
)

// dataplaneReporter is the part of the controller API that takes this host's view of the data plane
// (*client.Client has it; an older controller client may not, and then nothing is reported).
type dataplaneReporter interface {
	ReportDataplane(ctx context.Context, host string, unreachable []string) error
}

// How the data plane report is sent: checked every dataplaneCheck, sent when the set of unreachable
// hosts changes, and renewed every dataplaneRenew while it is not empty (the controller keeps it 30 s).
const (
	dataplaneCheck = time.Second
	dataplaneRenew = 10 * time.Second
)

// reportDataplane tells the controller which hosts this host finds unreachable (gossip and their
// kernel both silent, their entries withdrawn), so that `ovctl node ls` shows what the data plane does.
func (d *Driver) reportDataplane(ctx context.Context) {
	t := time.NewTicker(dataplaneCheck)
	defer t.Stop()
	var last []string
	var sent time.Time
	known := false // the controller has this run's report (a previous run's may linger until then)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r, ok := d.controller().(dataplaneReporter)
		if !ok {
			continue // not joined yet
		}
		var cur []string
		for _, m := range d.cfg.Members.Members() {
			if !m.Alive && m.Name != d.cfg.Host {
				cur = append(cur, m.Name)
			}
		}
		slices.Sort(cur)
		if known && slices.Equal(cur, last) && (len(cur) == 0 || time.Since(sent) < dataplaneRenew) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
		err := r.ReportDataplane(rctx, d.cfg.Host, cur)
		cancel()
		if err != nil {
			d.log.Debug("report the data plane to the controller (retried)", "err", err)
			continue
		}
		last, sent, known = cur, time.Now(), true
	}
}
