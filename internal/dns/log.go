package dns

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// Problem classes: each is logged at most once per logEvery, with the number of occurrences since its
// last line, so that a hostile or broken container cannot flood the agent's log.
const (
	logMalformed = iota // queries that do not parse
	logOversize         // UDP queries larger than the read buffer
	logUpstream         // upstream resolvers that fail or time out
	logBusy             // forwarded queries refused because MaxInflight are in flight
	logSocket           // socket errors (reads, writes, accepts)
	logTCPLimit         // TCP connections refused because a container holds too many
	numLogClasses
)

const logEvery = time.Minute

type logLimiter struct {
	log     *slog.Logger
	classes [numLogClasses]struct {
		last  atomic.Int64 // unix nanoseconds of the last line
		count atomic.Int64 // occurrences since it
	}
}

// note records one occurrence of a problem and logs it when its class has been quiet for logEvery.
func (l *logLimiter) note(class int, msg string, args ...any) {
	c := &l.classes[class]
	c.count.Add(1)
	now := time.Now().UnixNano()
	last := c.last.Load()
	if last != 0 && now-last < int64(logEvery) {
		return
	}
	if !c.last.CompareAndSwap(last, now) {
		return
	}
	n := c.count.Swap(0)
	l.log.Warn(msg, append(args, "occurrences", n, "next_report_in", logEvery)...)
}
