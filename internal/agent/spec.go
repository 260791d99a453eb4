package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ovnet/ov/api"
	"github.com/ovnet/ov/internal/errdefs"
	"github.com/ovnet/ov/internal/image"
	"github.com/ovnet/ov/internal/ovrt/spec"
)

// specInput is what the agent knows when it builds a container's OCI spec.
type specInput struct {
	ID       string
	Create   api.ContainerCreate
	Image    image.RunConfig
	Rootfs   string
	Netns    string // "" with HostNet: the host's; "" otherwise: a new, empty namespace
	HostNet  bool
	Hostname string
	Bundle   string // where hostname/hosts/resolv.conf files are written
	Cgroup   string // the container's cgroup path (CgroupParent/ID)
	// ResolvConf is the container's /etc/resolv.conf (see resolvConfFor); nil: the host's.
	ResolvConf []byte
	InitPath   string // the agent's init for --init (Config.InitPath)
	VolumesDir string // where named volumes live (ctl-mounts; set by writeSpec)
}

// command returns entrypoint + cmd as docker combines them.
func command(c api.ContainerCreate, img image.RunConfig) []string {
	ep := img.Entrypoint
	if c.Entrypoint != nil {
		ep = c.Entrypoint
	}
	cmd := img.Cmd
	if len(c.Cmd) > 0 || c.Entrypoint != nil {
		cmd = c.Cmd
	}
	return append(append([]string(nil), ep...), cmd...)
}

// mergeEnv returns base with over's variables replacing or added.
func mergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	for _, e := range over {
		k, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, o := range out {
			if ok, _, _ := strings.Cut(o, "="); ok == k {
				out[i], replaced = e, true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}

// resolveUser resolves "name|uid[:group|gid]" against the rootfs (for exec) the way runtime/spec does
// for the container's process, with the container's --group-add groups (as docker exec -u).
func resolveUser(rootfs, user string, groupAdd ...string) (specs.User, error) {
	s, err := spec.Default(spec.Options{ID: "exec", Args: []string{"exec"}, User: user, Rootfs: rootfs, GroupAdd: groupAdd})
	if err != nil {
		return specs.User{}, err
	}
	return s.Process.User, nil
}

// buildSpec makes the container's OCI spec: Docker's defaults (runtime/spec) for the request and the
// image's run config, plus the container's /etc/hostname, /etc/hosts and /etc/resolv.conf.
func buildSpec(in specInput) (*specs.Spec, error) {
	c := in.Create
	args := command(c, in.Image)
	if len(args) == 0 {
		return nil, fmt.Errorf("container: image %q names no command and none was given: %w", c.Image, errdefs.ErrInvalidArgument)
	}
	netns := in.Netns
	if in.HostNet {
		netns = "host"
	}
	o := spec.Options{
		ID: in.ID, Args: args, Env: mergeEnv(in.Image.Env, c.Env), Cwd: firstNonEmpty(c.WorkingDir, in.Image.WorkingDir),
		Hostname: in.Hostname, Terminal: c.Tty, NetNSPath: netns, ReadOnly: c.ReadOnly, Privileged: c.Privileged,
		CapAdd: c.CapAdd, CapDrop: c.CapDrop, User: firstNonEmpty(c.User, in.Image.User), Rootfs: in.Rootfs,
		Memory: c.Memory, CPUs: float64(c.NanoCPUs) / 1e9, PidsLimit: c.PidsLimit, CgroupsPath: in.Cgroup,
		GroupAdd: c.GroupAdd,
	}
	o.Mounts = append(o.Mounts, specMounts(c.Mounts, in.VolumesDir)...)
	s, err := spec.Default(o)
	if err != nil {
		return nil, err
	}
	if c.Privileged || slices.ContainsFunc(c.CapAdd, func(c string) bool { return strings.EqualFold(c, "ALL") }) {
		// "All capabilities" means all that the agent itself may hand out (like containerd's
		// WithAllCurrentCapabilities): a sandboxed host can lack some in its bounding set, and the
		// runtime cannot raise what is not there.
		if bnd, ok := boundingSet(); ok && s.Process.Capabilities != nil {
			pc := s.Process.Capabilities
			pc.Bounding, pc.Effective, pc.Permitted = keepCaps(pc.Bounding, bnd), keepCaps(pc.Effective, bnd), keepCaps(pc.Permitted, bnd)
		}
	}
	if err := applyProcOptions(s, in); err != nil {
		return nil, err
	}
	if err := writeEtcFiles(s, in); err != nil {
		return nil, err
	}
	return s, nil
}

// writeEtcFiles writes /etc/hostname, /etc/hosts and /etc/resolv.conf for the container into its
// bundle and bind-mounts them (as Docker does), unless it shares the host's network.
func writeEtcFiles(s *specs.Spec, in specInput) error {
	if in.HostNet {
		return nil
	}
	hosts := hostsFile(in.Hostname, "", extraHosts(in.Create.ExtraHosts, ""))
	resolv := in.ResolvConf
	if resolv == nil {
		resolv, _ = os.ReadFile("/etc/resolv.conf")
	}
	files := map[string][]byte{"hostname": []byte(in.Hostname + "\n"), "hosts": []byte(hosts), "resolv.conf": resolv}
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		p := filepath.Join(in.Bundle, name)
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return err
		}
		opts := []string{"rbind", "rprivate"}
		if in.Create.ReadOnly {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/" + name, Type: "bind", Source: p, Options: opts})
	}
	return nil
}

// boundingSet returns the capability bounding set of the agent's process, by capability name.
func boundingSet() (map[string]bool, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, false
			}
			out := map[string]bool{}
			for i, name := range spec.AllCapabilities() { // in number order
				if mask&(1<<uint(i)) != 0 {
					out[name] = true
				}
			}
			return out, true
		}
	}
	return nil, false
}

func keepCaps(caps []string, allowed map[string]bool) []string {
	out := caps[:0:0]
	for _, c := range caps {
		if allowed[c] {
			out = append(out, c)
		}
	}
	return out
}

func hostsFile(hostname, ip string, extra []string) string {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	hosts += strings.Join(extra, "")
	if ip != "" {
		hosts += ip + "\t" + hostname + "\n"
	}
	return hosts
}

// writeHosts rewrites the container's /etc/hosts in place (the bind mount keeps the inode) once its
// address is known.
func writeHosts(bundle, hostname, ip string, extra []string) error {
	return os.WriteFile(filepath.Join(bundle, "hosts"), []byte(hostsFile(hostname, ip, extra)), 0o644)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
