package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ovnet/ov/api"
)

// The rows --format templates see, with docker's field names (docs/cli-format.md).

// dockerTime is how docker prints a time in its tables' CreatedAt.
const dockerTime = "2006-01-02 15:04:05 -0700 MST"

// psRow is a container as `ovctl ps --format` sees it.
type psRow struct {
	ID, Image, Command, CreatedAt, RunningFor, Ports, State, Status, Names, Networks, Mounts string
	Labels                                                                                   string // k=v,k=v (--label)
	labels                                                                                   map[string]string
}

// Label is the value of one label, as docker's {{.Label "com.example.tier"}}.
func (r psRow) Label(name string) string { return r.labels[name] }

var psHeaders = map[string]string{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
	"RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Names": "NAMES",
	"Networks": "NETWORKS", "Mounts": "MOUNTS", "Labels": "LABELS", "Size": "SIZE",
}

func newPsRow(c api.Container) psRow {
	var nets, ports, mounts []string
	for _, n := range c.Networks {
		nets = append(nets, n.Network)
	}
	for _, p := range c.Config.Ports {
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		ports = append(ports, fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.ContainerPort, p.Protocol))
	}
	for _, m := range c.Config.Mounts {
		if m.MountType() != api.MountTmpfs {
			mounts = append(mounts, m.Source)
		}
	}
	cmdline := strings.Join(c.Command, " ")
	if len(cmdline) > 20 {
		cmdline = cmdline[:19] + "…"
	}
	return psRow{
		ID: api.ShortID(c.ID), Image: c.Image, Command: fmt.Sprintf("%q", cmdline),
		CreatedAt: c.Created.Local().Format(dockerTime), RunningFor: ago(c.Created), Ports: strings.Join(ports, ", "),
		State: c.State.Status, Status: containerStatus(c), Names: c.Name, Networks: strings.Join(nets, ","),
		Mounts: strings.Join(mounts, ","), Labels: labelString(c.Config.Labels), labels: c.Config.Labels,
	}
}

// imageRow is one tag of an image as `ovctl image ls --format` sees it.
type imageRow struct {
	Repository, Tag, ID, Digest, CreatedAt, CreatedSince, Size string
}

var imageHeaders = map[string]string{
	"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST", "CreatedAt": "CREATED AT",
	"CreatedSince": "CREATED", "Size": "SIZE",
}

// imageRows are img's rows, one a tag (or one <none>:<none> when it has none).
func imageRows(img api.Image) []imageRow {
	refs := img.Refs
	if len(refs) == 0 {
		refs = []string{"<none>:<none>"}
	}
	var out []imageRow
	for _, r := range refs {
		i := strings.LastIndex(r, ":")
		row := imageRow{Repository: r[:i], Tag: r[i+1:], ID: api.ShortID(strings.TrimPrefix(img.ID, "sha256:")),
			Digest: "<none>", CreatedAt: "N/A", CreatedSince: "N/A", Size: humanSize(img.Size)}
		if !img.Created.IsZero() {
			row.CreatedAt, row.CreatedSince = img.Created.Local().Format(dockerTime), ago(img.Created)
		}
		out = append(out, row)
	}
	return out
}

// networkRow is a network as `ovctl network ls --format` sees it.
type networkRow struct {
	ID, Name, Driver, Scope, Subnet, Gateway, CreatedAt, Labels string
	Internal                                                    bool
}

var networkHeaders = map[string]string{
	"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Subnet": "SUBNET",
	"Gateway": "GATEWAY", "CreatedAt": "CREATED AT", "Labels": "LABELS", "Internal": "INTERNAL",
}

func newNetworkRow(n api.Network) networkRow {
	scope := "local"
	if n.Driver == api.DriverOverlay {
		scope = "global" // cluster-wide, through the controller
	}
	row := networkRow{ID: api.ShortID(n.ID), Name: n.Name, Driver: n.Driver, Scope: scope, Subnet: n.Subnet,
		Gateway: n.Gateway, Labels: labelString(n.Labels), Internal: n.Internal}
	if !n.Created.IsZero() {
		row.CreatedAt = n.Created.Local().Format(dockerTime)
	}
	return row
}

// volumeRow is a volume as `ovctl volume ls --format` sees it.
type volumeRow struct {
	Name, Driver, Scope, Mountpoint, Labels, CreatedAt string
}

var volumeHeaders = map[string]string{
	"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT", "Labels": "LABELS",
	"CreatedAt": "CREATED AT",
}

func newVolumeRow(v api.Volume) volumeRow {
	return volumeRow{Name: v.Name, Driver: v.Driver, Scope: v.Scope, Mountpoint: v.Mountpoint,
		Labels: labelString(v.Labels), CreatedAt: v.CreatedAt.Local().Format(dockerTime)}
}

// labelString renders labels as docker's tables do: k=v pairs, comma-separated, sorted.
func labelString(labels map[string]string) string {
	var kv []string
	for k, v := range labels {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// humanSize renders a size in bytes as docker does (decimal units, 3 significant digits): 4.86MB.
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f, i := float64(n), 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}

// sinceTime is `ago` for a time that may be unknown.
func sinceTime(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return ago(t)
}
