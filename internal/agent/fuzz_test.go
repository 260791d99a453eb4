package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/image"
)

// noImages is an image store that holds no image: a create that passes validation stops at the image,
// before anything is made on the host.
type noImages struct{}

func (noImages) Load(context.Context, io.Reader, image.LoadOptions) ([]image.Image, error) {
	return nil, errdefs.ErrInvalidArgument
}
func (noImages) Import(context.Context, io.Reader, image.ImportOptions) (image.Image, error) {
	return image.Image{}, errdefs.ErrInvalidArgument
}
func (noImages) List(context.Context) ([]image.Image, error) { return nil, nil }
func (noImages) Get(_ context.Context, ref string) (image.Image, error) {
	return image.Image{}, fmt.Errorf("image %q not found: %w", ref, errdefs.ErrNotFound)
}
func (noImages) Remove(context.Context, string) (image.Removed, error) {
	return image.Removed{}, errdefs.ErrNotFound
}
func (noImages) Prepare(context.Context, string, string) (string, error) {
	return "", errdefs.ErrInvalidArgument
}
func (noImages) Release(context.Context, string) error { return nil }

// agentFuzzRoutes are the agent's API calls that decode a body or parse a query value (%s: the fuzzed
// name, path-escaped; %q: the fuzzed name as a query value).
var agentFuzzRoutes = []struct{ method, path string }{
	{http.MethodPost, "/v1/containers"},
	{http.MethodPost, "/v1/containers/%s/exec"},
	{http.MethodPost, "/v1/containers/%s/resize"},
	{http.MethodPost, "/v1/networks"},
	{http.MethodPost, "/v1/networks/%s/connect"},
	{http.MethodPost, "/v1/networks/%s/disconnect"},
	{http.MethodPost, "/v1/containers/c/kill?signal=%q"},
	{http.MethodPost, "/v1/containers/c/stop?timeout=%q"},
	{http.MethodGet, "/v1/containers/c/logs?tail=%q"},
}

// FuzzAgentRequest sends any body (and name or query value) to the agent's API calls that decode
// one, on an agent with no containers, no network drivers and no images. Every answer is an API error
// with a code and a message or a success, never a 5xx or a panic; and a refused request leaves nothing
// behind: no container, no reserved name, nothing under the state directories. A create naming an
// absolute rootfs directory that exists is not sent: it would go on to make a container.
func FuzzAgentRequest(f *testing.F) {
	dir := f.TempDir()
	cfg := DefaultConfig()
	cfg.Root, cfg.RunDir = filepath.Join(dir, "lib"), filepath.Join(dir, "run")
	cfg.Runtime, cfg.ShimCommand, cfg.Images = "/bin/false", []string{"/bin/false"}, noImages{}
	a, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(a.Close)
	h := a.Handler()
	seeds := []struct {
		route byte
		name  string
		body  string
	}{
		{0, "", `{"name":"web","image":"busybox","cmd":["sh"],"network":"front","ports":[{"hostPort":80,"containerPort":80}]}`},
		{0, "", `{"image":"busybox","network":"host","ip":"10.0.0.2"}`},
		{0, "", `{"image":"busybox","unknown":true}`},
		{0, "", `{"image":"busybox","memory":-1}`},
		{1, "c", `{"cmd":["sh"],"tty":true}`},
		{1, "../..", `{"cmd":[]}`},
		{2, "c", `{"rows":24,"cols":80}`},
		{3, "", `{"name":"b","driver":"bridge","subnet":"10.9.0.0/24"}`},
		{3, "", `{"name":"host","driver":"bridge"}`},
		{4, "b", `{"container":"c","ip":"10.9.0.5"}`},
		{5, "b", `{"container":"c","force":true}`},
		{6, "SIGTERM", ``},
		{6, "99", ``},
		{7, "-1", ``},
		{8, "all", ``},
		{8, "-3", ``},
	}
	for _, sd := range seeds {
		f.Add(sd.route, sd.name, []byte(sd.body))
	}
	f.Fuzz(func(t *testing.T, route byte, name string, body []byte) {
		rt := agentFuzzRoutes[int(route)%len(agentFuzzRoutes)]
		if int(route)%len(agentFuzzRoutes) == 0 {
			var req api.ContainerCreate
			if json.Unmarshal(body, &req) == nil && filepath.IsAbs(req.Image) {
				if fi, err := os.Stat(req.Image); err == nil && fi.IsDir() {
					return
				}
			}
		}
		path := strings.Replace(rt.path, "%s", url.PathEscape(name), 1)
		path = strings.Replace(path, "%q", url.QueryEscape(name), 1)
		req, err := http.NewRequest(rt.method, "http://agent"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", rt.method, path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && rec.Code != http.StatusMethodNotAllowed && rec.Code != http.StatusNotFound {
			var e api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" {
				t.Fatalf("%s %s %q: %d with an answer that is not an API error: %s", rt.method, path, body, rec.Code, rec.Body)
			}
		}
		if rec.Code < 300 {
			t.Fatalf("%s %s %q: accepted (%d %s) by an agent with no containers, networks or images", rt.method, path, body, rec.Code, rec.Body)
		}
		a.mu.Lock()
		nc, nn := len(a.containers), len(a.names)
		a.mu.Unlock()
		if nc != 0 || nn != 0 {
			t.Fatalf("%s %s %q: refused, but the agent holds %d containers and %d names", rt.method, path, body, nc, nn)
		}
		for _, d := range []string{filepath.Join(cfg.Root, "containers"), filepath.Join(cfg.RunDir, "containers")} {
			if ents, _ := os.ReadDir(d); len(ents) != 0 {
				t.Fatalf("%s %s %q: refused, but %s holds %s", rt.method, path, body, d, ents[0].Name())
			}
		}
	})
}
