package wireguard

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/ovnet/ov/internal/atomicfile"
)

// loadKey reads the private key at path, or makes a new one there (0600) when there is none. It
// returns the key and when it was made (the file's modification time).
func loadKey(path string) (wgtypes.Key, time.Time, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newKey(path)
	}
	if err != nil {
		return wgtypes.Key{}, time.Time{}, fmt.Errorf("read the WireGuard private key: %w", err)
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return wgtypes.Key{}, time.Time{}, fmt.Errorf("the WireGuard private key in %s is damaged (%v); delete the file and the agent makes a new key pair", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return wgtypes.Key{}, time.Time{}, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return wgtypes.Key{}, time.Time{}, fmt.Errorf("close the WireGuard private key %s to other users: %w", path, err)
		}
	}
	return k, st.ModTime(), nil
}

// newKey makes a key pair and writes the private key to path (0600, fsynced) before it is used.
func newKey(path string) (wgtypes.Key, time.Time, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, time.Time{}, fmt.Errorf("make a WireGuard key pair: %w", err)
	}
	if err := atomicfile.WriteSync(path, []byte(k.String()+"\n"), 0o600); err != nil {
		return wgtypes.Key{}, time.Time{}, fmt.Errorf("keep the WireGuard private key: %w", err)
	}
	return k, time.Now(), nil
}
