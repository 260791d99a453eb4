package overlay

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ovnet/ov/internal/atomicfile"
	"github.com/ovnet/ov/internal/errdefs"
)

// The host token is this host's identity in the cluster: the controller hands it out once, at the
// first registration, and keeps only its hash. It lives in a file of its own (Config.TokenPath),
// written with an fsync so that a crash right after registering does not lose it, and it is never
// dropped on a single refusal: a controller restored from an old etcd snapshot or a passing
// misconfiguration may refuse it for a while. Only after Config.TokenRefusals refusals in a row,
// spanning Config.TokenRefusalWindow, is it set aside (renamed to TokenPath.refused, not deleted)
// and the agent registers with the join token, which works when the host was removed (ovctl node
// rm) or its token reset (ovctl node reset-token).

// validToken tells whether s looks like a host token ("ovh.<host>.<...>", printable, no spaces).
func validToken(s string) bool {
	if !strings.HasPrefix(s, hostTokenPrefix) || len(s) < len(hostTokenPrefix)+3 || len(s) > 512 {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// hostTokenPrefix starts every host token the controller mints.
const hostTokenPrefix = "ovh."

// loadToken reads the host token: from Config.TokenPath, or from the state file of an agent that
// kept it there (moved to TokenPath then). A damaged token file is set aside (TokenPath.damaged)
// with an error log that says what to do, and the agent starts without a token.
func (d *Driver) loadToken() error {
	path := d.cfg.TokenPath
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && d.st.HostToken != "":
		if err := atomicfile.WriteSync(path, []byte(d.st.HostToken+"\n"), 0o600); err != nil {
			return fmt.Errorf("move the host token to %s: %w", path, err)
		}
		d.token, d.st.HostToken = d.st.HostToken, ""
		return d.persist()
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read the host token %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if validToken(tok) {
		d.token = tok
		return nil
	}
	aside := path + ".damaged"
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("the host token file %s is damaged, and cannot be set aside (%v); remove it, then run ovctl node reset-token %s: %w", path, err, d.cfg.Host, errdefs.ErrInvalidArgument)
	}
	d.log.Error("the host token file is damaged; set aside. This host cannot prove its identity to the controller until an admin runs ovctl node reset-token "+d.cfg.Host+" (its containers keep their addresses); the agent then registers again with the join token by itself",
		"path", path, "set_aside", aside)
	return nil
}

// keepToken makes tok the host token, on disk (fsynced) first.
func (d *Driver) keepToken(tok string) error {
	if err := atomicfile.WriteSync(d.cfg.TokenPath, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("keep the host token in %s: %w", d.cfg.TokenPath, err)
	}
	d.mu.Lock()
	d.token, d.refused, d.firstRefusal = tok, 0, time.Time{}
	d.mu.Unlock()
	return nil
}

// tokenAccepted notes that the controller accepted the host token.
func (d *Driver) tokenAccepted() {
	d.mu.Lock()
	d.refused, d.firstRefusal = 0, time.Time{}
	d.mu.Unlock()
}

// tokenRefused counts a definitive refusal of the host token (err: 401 or 404). It returns true when
// the token was set aside: refused Config.TokenRefusals times in a row over at least
// Config.TokenRefusalWindow. The token file is then renamed to TokenPath.refused (kept, not deleted)
// and an error log says what the operator must do.
func (d *Driver) tokenRefused(err error) bool {
	d.mu.Lock()
	if d.token == "" {
		d.mu.Unlock()
		return true
	}
	if d.refused == 0 {
		d.firstRefusal = time.Now()
	}
	d.refused++
	n, since := d.refused, d.firstRefusal
	if n < d.cfg.TokenRefusals || time.Since(since) < d.cfg.TokenRefusalWindow {
		d.mu.Unlock()
		if n == 1 {
			d.log.Warn("the controller refused this host's token; retrying before setting it aside", "err", err)
		}
		return false
	}
	d.token, d.refused, d.firstRefusal = "", 0, time.Time{}
	d.mu.Unlock()
	aside := d.cfg.TokenPath + ".refused"
	if rerr := os.Rename(d.cfg.TokenPath, aside); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		d.log.Error("cannot set the refused host token aside", "path", d.cfg.TokenPath, "err", rerr)
	}
	d.log.Error("the controller refused this host's token "+fmt.Sprint(n)+" times since "+since.UTC().Format(time.RFC3339)+"; it is set aside and the agent registers with the join token. "+
		"That works if the host was removed (ovctl node rm) or its token reset; otherwise an admin must run ovctl node reset-token "+d.cfg.Host+" (its containers keep their addresses)",
		"set_aside", aside, "err", err)
	return true
}
