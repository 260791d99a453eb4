package api

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/ovnet/ov/internal/errdefs"
)

// ParseTail parses how many of the last log entries to show: a number, or "" or "all" for every
// one (-1).
func ParseTail(v string) (int, error) {
	if v == "" || v == "all" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("logs: tail %q is not a number of lines; give a number or \"all\": %w", v, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// LogsQuery is the query of a logs request to the agent or a shim: follow=1 to go on until the
// container exits, and tail=N for the last N entries (tail < 0: every entry).
func LogsQuery(follow bool, tail int) url.Values {
	q := url.Values{}
	if follow {
		q.Set("follow", "1")
	}
	if tail >= 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	return q
}
