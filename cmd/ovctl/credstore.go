package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/atomicfile"
)

// dockerHubKey is where docker's config.json keeps Docker Hub's credentials.
const dockerHubKey = "https://index.docker.io/v1/"

// credStore is ovctl's credentials file, in docker's config.json format ({"auths": {REGISTRY:
// {"auth": base64(USER:PASSWORD)}}}): $DOCKER_CONFIG/config.json when DOCKER_CONFIG is set (shared
// with docker), else ~/.ov/config.json. It is written 0600 in a 0700 directory; keys ovctl does not
// know are kept.
type credStore struct{ path string }

func defaultCredStore() (credStore, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return credStore{path: filepath.Join(d, "config.json")}, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return credStore{}, fmt.Errorf("no home directory for the credentials file (%v); set DOCKER_CONFIG", err)
	}
	return credStore{path: filepath.Join(home, ".ov", "config.json")}, nil
}

type authEntry struct {
	Auth string `json:"auth,omitempty"`
}

func (c credStore) read() (map[string]json.RawMessage, map[string]authEntry, error) {
	all := map[string]json.RawMessage{}
	auths := map[string]authEntry{}
	data, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return all, auths, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, nil, fmt.Errorf("credentials file %s is not JSON (%v); fix or remove it", c.path, err)
	}
	if raw, ok := all["auths"]; ok {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return nil, nil, fmt.Errorf("credentials file %s: \"auths\" is malformed (%v); fix or remove it", c.path, err)
		}
	}
	return all, auths, nil
}

func (c credStore) write(all map[string]json.RawMessage, auths map[string]authEntry) error {
	raw, err := json.Marshal(auths)
	if err != nil {
		return err
	}
	all["auths"] = raw
	data, err := json.MarshalIndent(all, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteSync(c.path, append(data, '\n'), 0o600)
}

// get returns the credentials stored for registry, or nil.
func (c credStore) get(registry string) (*api.RegistryAuth, error) {
	_, auths, err := c.read()
	if err != nil {
		return nil, err
	}
	e, ok := auths[registryKey(registry)]
	if !ok || e.Auth == "" {
		return nil, nil
	}
	dec, err := base64.StdEncoding.DecodeString(e.Auth)
	if err != nil {
		return nil, fmt.Errorf("credentials file %s: the entry of %s is malformed; run ovctl login %s again", c.path, registry, registry)
	}
	user, pass, _ := strings.Cut(string(dec), ":")
	return &api.RegistryAuth{Username: user, Password: pass, ServerAddress: registry}, nil
}

func (c credStore) set(auth api.RegistryAuth) error {
	all, auths, err := c.read()
	if err != nil {
		return err
	}
	auths[registryKey(auth.ServerAddress)] = authEntry{Auth: base64.StdEncoding.EncodeToString([]byte(auth.Username + ":" + auth.Password))}
	return c.write(all, auths)
}

// remove forgets registry's credentials and reports whether there were any.
func (c credStore) remove(registry string) (bool, error) {
	all, auths, err := c.read()
	if err != nil {
		return false, err
	}
	k := registryKey(registry)
	if _, ok := auths[k]; !ok {
		return false, nil
	}
	delete(auths, k)
	return true, c.write(all, auths)
}

// registryKey is the config.json key of registry (Docker Hub has docker's historical URL).
func registryKey(registry string) string {
	switch registry {
	case "", name.DefaultRegistry, "docker.io", "registry-1.docker.io", dockerHubKey:
		return dockerHubKey
	}
	return registry
}

// registryOf returns the registry of image reference ref ("index.docker.io" for Docker Hub).
func registryOf(ref string) string {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ""
	}
	return r.Context().RegistryStr()
}
