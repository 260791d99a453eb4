package api

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ovnet/ov/internal/errdefs"
)

// StateRestarting is the status of a container whose process exited and that its restart policy
// will start again once the backoff delay has passed (docker's "Restarting").
const StateRestarting = "restarting"

// Restart policy names (docker run --restart).
const (
	RestartNo            = "no"
	RestartOnFailure     = "on-failure"
	RestartAlways        = "always"
	RestartUnlessStopped = "unless-stopped"
)

// RestartPolicy is docker's restart policy: whether the agent starts the container again when its
// process exits. The zero value is "no".
type RestartPolicy struct {
	Name string `json:"name,omitempty"` // no (or empty), on-failure, always, unless-stopped
	// MaximumRetryCount bounds the restarts of on-failure; 0: no bound.
	MaximumRetryCount int `json:"maximumRetryCount,omitempty"`
}

// ParseRestartPolicy parses --restart no|on-failure[:MAX]|always|unless-stopped.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	name, max, hasMax := strings.Cut(s, ":")
	p := RestartPolicy{Name: name}
	if hasMax && name == "" {
		return p, fmt.Errorf("--restart %q: invalid restart policy format: no policy provided before colon; use on-failure:MAX: %w", s, errdefs.ErrInvalidArgument)
	}
	if max != "" {
		n, err := strconv.Atoi(max)
		if err != nil {
			return p, fmt.Errorf("--restart %q: invalid restart policy format: maximum retry count must be an integer, e.g. on-failure:3: %w", s, errdefs.ErrInvalidArgument)
		}
		p.MaximumRetryCount = n
	}
	return p, p.Validate()
}

// Validate checks the policy as docker does.
func (p RestartPolicy) Validate() error {
	switch p.Name {
	case "", RestartNo, RestartAlways, RestartUnlessStopped:
		if p.MaximumRetryCount != 0 {
			return fmt.Errorf("--restart %s:%d: invalid restart policy: maximum retry count can only be used with 'on-failure'; use on-failure:%d or drop the count: %w", p.Name, p.MaximumRetryCount, p.MaximumRetryCount, errdefs.ErrInvalidArgument)
		}
	case RestartOnFailure:
		if p.MaximumRetryCount < 0 {
			return fmt.Errorf("--restart on-failure:%d: invalid restart policy: maximum retry count cannot be negative; use 0 (no limit) or more: %w", p.MaximumRetryCount, errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("--restart %s: invalid restart policy '%s'; use no, on-failure[:MAX], always or unless-stopped: %w", p.Name, p.Name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// IsNone tells whether the policy never restarts (no, or none given).
func (p RestartPolicy) IsNone() bool { return p.Name == "" || p.Name == RestartNo }

// String renders p the way --restart takes it ("no" for none).
func (p RestartPolicy) String() string {
	if p.IsNone() {
		return RestartNo
	}
	if p.Name == RestartOnFailure && p.MaximumRetryCount > 0 {
		return p.Name + ":" + strconv.Itoa(p.MaximumRetryCount)
	}
	return p.Name
}

// validateRestart checks the create's restart policy, and that it does not come with --rm.
func (c *ContainerCreate) validateRestart() error {
	if err := c.RestartPolicy.Validate(); err != nil {
		return err
	}
	if c.AutoRemove && !c.RestartPolicy.IsNone() {
		return fmt.Errorf("Conflicting options: --restart and --rm; a container removed when it exits cannot be restarted, drop one of them: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}
