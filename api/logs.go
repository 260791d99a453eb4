package api

import (
	"fmt"
	"strconv"

	"github.com/ovnet/ov/internal/errdefs"
)

// ParseTail parses a logs --tail value: a number of entries, or "" or "all" for every one (-1).
func ParseTail(v string) (int, error) {
	if v == "" || v == "all" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("logs: --tail %q is not a number of lines: %w", v, errdefs.ErrInvalidArgument)
	}
	return n, nil
}
