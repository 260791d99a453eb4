package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ovnet/ov/internal/errdefs"
)

// RegistryConfig says how the store reaches OCI distribution registries.
type RegistryConfig struct {
	// CertsDir holds extra CA certificates per registry: CertsDir/HOST[:PORT]/*.crt are trusted for
	// that registry besides the system's roots (docker's /etc/docker/certs.d). Default /etc/ov/certs.d.
	CertsDir string
	// Insecure lists registries ("host[:port]", or a CIDR such as 10.0.0.0/8) whose TLS certificate is
	// not verified and which may be reached over plain HTTP (dockerd's --insecure-registry). Default
	// none. As with go-containerregistry (and docker for 127.0.0.0/8), registries on loopback or
	// private addresses fall back to plain HTTP when they do not speak TLS.
	Insecure []string
}

// DefaultCertsDir is RegistryConfig.CertsDir's default.
const DefaultCertsDir = "/etc/ov/certs.d"

// Auth is the credentials given for one pull or push; the zero value is anonymous.
type Auth struct {
	Username string
	Password string
}

func (a Auth) authenticator() authn.Authenticator {
	if a.Username == "" && a.Password == "" {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password})
}

// insecure reports whether registry host[:port] is listed in c.Insecure.
func (c RegistryConfig) insecure(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	for _, e := range c.Insecure {
		if e == registry || e == host {
			return true
		}
		if _, n, err := net.ParseCIDR(e); err == nil && ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// transport returns the HTTP transport for registry: the system's roots plus CertsDir/registry/*.crt,
// or no verification when the registry is insecure.
func (c RegistryConfig) transport(registry string) (http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if c.insecure(registry) {
		tr.TLSClientConfig.InsecureSkipVerify = true
		return tr, nil
	}
	if c.CertsDir == "" {
		return tr, nil
	}
	dir := filepath.Join(c.CertsDir, registry)
	files, _ := filepath.Glob(filepath.Join(dir, "*.crt"))
	if len(files) == 0 {
		return tr, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("registry %s: CA certificate: %w", registry, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errf(errdefs.ErrInvalidArgument, "registry %s: %s holds no PEM certificate; put the registry's CA certificate there in PEM form", registry, f)
		}
	}
	tr.TLSClientConfig.RootCAs = pool
	return tr, nil
}

// nameOptions are the options to parse a reference to a registry with.
func (c RegistryConfig) nameOptions(registry string) []name.Option {
	if c.insecure(registry) {
		return []name.Option{name.Insecure}
	}
	return nil
}

// parseRemote parses ref ("[REGISTRY/]NAME[:TAG]", or NAME@DIGEST) for a registry operation.
func (s *Store) parseRemote(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, errf(errdefs.ErrInvalidArgument, "image reference %q: %v", ref, err)
	}
	if opts := s.cfg.Registry.nameOptions(r.Context().RegistryStr()); len(opts) > 0 {
		r, err = name.ParseReference(ref, opts...)
		if err != nil {
			return nil, errf(errdefs.ErrInvalidArgument, "image reference %q: %v", ref, err)
		}
	}
	return r, nil
}

// remoteOptions are the go-containerregistry options to reach ref's registry with auth.
func (s *Store) remoteOptions(ctx context.Context, reg string, auth Auth) ([]remote.Option, error) {
	tr, err := s.cfg.Registry.transport(reg)
	if err != nil {
		return nil, err
	}
	return []remote.Option{
		remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuth(auth.authenticator()),
		remote.WithUserAgent("ov"), remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
	}, nil
}

// Login checks auth against registry (host[:port]) as `docker login` does: it asks the registry's
// /v2/ endpoint with the credentials. Wrong credentials are errdefs.ErrUnauthorized.
func (s *Store) Login(ctx context.Context, registry string, auth Auth) error {
	reg, err := name.NewRegistry(registry, s.cfg.Registry.nameOptions(registry)...)
	if err != nil {
		return errf(errdefs.ErrInvalidArgument, "registry %q: %v", registry, err)
	}
	tr, err := s.cfg.Registry.transport(reg.RegistryStr())
	if err != nil {
		return err
	}
	rt, err := transport.NewWithContext(ctx, reg, auth.authenticator(), tr, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return s.cfg.Registry.wrap(reg.RegistryStr(), "log in to", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return s.cfg.Registry.wrap(reg.RegistryStr(), "log in to", err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return errf(errdefs.ErrUnauthorized, "log in to %s: the registry refused the credentials (%s); check the user name and password", reg.RegistryStr(), resp.Status)
	case resp.StatusCode >= 300:
		return errf(errdefs.ErrUnavailable, "log in to %s: the registry answered %s", reg.RegistryStr(), resp.Status)
	}
	return nil
}

// wrap turns an error of go-containerregistry into one of an errdefs class that says what
// to do: log in, trust the CA, check the name.
func (c RegistryConfig) wrap(registry, what string, err error) error {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var tv *tls.CertificateVerificationError
	if errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &tv) || strings.Contains(err.Error(), "x509: ") {
		return errf(errdefs.ErrUnavailable, "%s: registry %s: TLS certificate not trusted (%v); put the registry's CA certificate in %s/%s/ca.crt on the agent's host, or start ovagent with --insecure-registry %s", what, registry, err, c.CertsDir, registry, registry)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return errf(errdefs.ErrNotFound, "%s: manifest unknown: %s has no such repository or tag; check the name and tag (ovctl image push puts an image there)", what, registry)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return errf(errdefs.ErrUnauthorized, "%s: %s refused access (%s); log in with ovctl login %s", what, registry, d.Message, registry)
			}
		}
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return errf(errdefs.ErrUnauthorized, "%s: %s refused access (%s); log in with ovctl login %s", what, registry, http.StatusText(te.StatusCode), registry)
		case http.StatusNotFound:
			return errf(errdefs.ErrNotFound, "%s: manifest unknown: %s has no such repository or tag; check the name and tag", what, registry)
		}
		return errf(errdefs.ErrUnavailable, "%s: registry %s: %v", what, registry, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return errf(errdefs.ErrUnavailable, "%s: registry %s speaks plain HTTP; start ovagent with --insecure-registry %s to allow it", what, registry, registry)
	}
	return errf(errdefs.ErrUnavailable, "%s: registry %s: %v", what, registry, err)
}
