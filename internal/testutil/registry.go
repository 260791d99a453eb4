package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is Debian's docker-registry (the CNCF distribution registry, 2.8).
const RegistryBinary = "/usr/bin/docker-registry"

// RegistryOptions say how StartRegistry runs the registry.
type RegistryOptions struct {
	// IP to listen on; default 127.0.0.1.
	IP string
	// Port to listen on; default a free port of the host (choose one when Netns is set).
	Port int
	// User and Password, when set, turn on htpasswd basic auth.
	User, Password string
	// TLS serves HTTPS with a certificate for IP signed by a CA made for the test (Registry.CA).
	TLS bool
	// Netns, when set, is the network namespace (a path such as /run/netns/NAME) to run it in.
	Netns string
}

// Registry is a running docker-registry.
type Registry struct {
	Host string // IP:PORT
	CA   []byte // PEM of the CA that signed its certificate (TLS only)
	// Log is the registry's log file (requests at info level).
	Log string
}

// StartRegistry starts docker-registry with a config the test writes, storage in a temp dir, and
// stops it when the test ends. It fails the test when the binary is missing under OV_STRICT.
func StartRegistry(t testing.TB, o RegistryOptions) *Registry {
	t.Helper()
	RequireBinary(t, RegistryBinary, "docker-registry")
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.Port == 0 {
		l, err := net.Listen("tcp", net.JoinHostPort(o.IP, "0"))
		if err != nil {
			t.Fatal(err)
		}
		o.Port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	dir := t.TempDir()
	r := &Registry{Host: net.JoinHostPort(o.IP, fmt.Sprint(o.Port)), Log: filepath.Join(dir, "registry.log")}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), r.Host)
	if o.TLS {
		var crt, key []byte
		r.CA, crt, key = makeCerts(t, o.IP)
		writeFile(t, filepath.Join(dir, "server.crt"), crt)
		writeFile(t, filepath.Join(dir, "server.key"), key)
		cfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	}
	if o.User != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(o.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "htpasswd"), []byte(o.User+":"+string(h)+"\n"))
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: ov-test\n    path: %s\n", filepath.Join(dir, "htpasswd"))
	}
	writeFile(t, filepath.Join(dir, "config.yml"), []byte(cfg))
	logf, err := os.Create(r.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := []string{RegistryBinary, "serve", filepath.Join(dir, "config.yml")}
	if o.Netns != "" {
		args = append([]string{"nsenter", "--net=" + o.Netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	Eventually(t, 10*time.Second, func() error {
		b, _ := os.ReadFile(r.Log)
		if strings.Contains(string(b), "listening on") {
			return nil
		}
		return fmt.Errorf("docker-registry not listening yet: %s", b)
	})
	return r
}

// Requests returns the registry's logged requests of method whose path contains part.
func (r *Registry) Requests(t testing.TB, method, part string) int {
	t.Helper()
	b, err := os.ReadFile(r.Log)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "http.request.method="+method) && strings.Contains(l, part) && strings.Contains(l, "response completed") {
			n++
		}
	}
	return n
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// makeCerts makes a CA and a server certificate for ip (and localhost) signed by it, in PEM.
func makeCerts(t testing.TB, ip string) (ca, crt, key []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ov test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
