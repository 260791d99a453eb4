package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ovnet/ov/internal/errdefs"
)

// maxEtcdMembers bounds the external etcd cluster (etcd advises at most 7 members).
const maxEtcdMembers = 7

// Member is one member of the lab's external etcd cluster. The members run in the underlay
// namespace, beside the controller, on loopback addresses of that namespace (127.0.1.N, ports 2379
// and 2380): no port of the machine's own namespace is taken, two labs never collide, and partitioning
// a host never cuts the controller off its store.
type Member struct {
	Name      string `json:"name"`      // etcd1, etcd2, ...
	ClientURL string `json:"clientUrl"` // where it serves clients (the controller)
	PeerURL   string `json:"peerUrl"`   // where it talks to the other members
	Dir       string `json:"dir"`       // its data directory, under the lab's
	Proc      Proc   `json:"proc"`
}

// newMembers lays out the external etcd cluster of cfg (none when cfg.EtcdMembers is 0).
func newMembers(cfg Config, netns string) []Member {
	var ms []Member
	var cluster []string
	for i := 1; i <= cfg.EtcdMembers; i++ {
		ip := "127.0.1." + strconv.Itoa(i)
		m := Member{
			Name:      "etcd" + strconv.Itoa(i),
			ClientURL: "http://" + ip + ":2379",
			PeerURL:   "http://" + ip + ":2380",
		}
		m.Dir = filepath.Join(cfg.Dir, "etcd", m.Name)
		cluster = append(cluster, m.Name+"="+m.PeerURL)
		ms = append(ms, m)
	}
	for i := range ms {
		m := &ms[i]
		m.Proc = Proc{
			Netns: netns,
			Log:   filepath.Join(cfg.Dir, m.Name+".log"),
			Argv: []string{cfg.EtcdBin,
				"--name", m.Name,
				"--data-dir", m.Dir,
				"--listen-client-urls", m.ClientURL,
				"--advertise-client-urls", m.ClientURL,
				"--listen-peer-urls", m.PeerURL,
				"--initial-advertise-peer-urls", m.PeerURL,
				// used only while the data directory is empty: a restarted member rejoins from its data
				"--initial-cluster", strings.Join(cluster, ","),
				"--initial-cluster-state", "new",
				"--initial-cluster-token", cfg.Prefix,
				"--logger", "zap",
			},
		}
	}
	return ms
}

// etcdFlags are the controller's flags for the members ms (none: its embedded etcd).
func etcdFlags(ms []Member) []string {
	if len(ms) == 0 {
		return nil
	}
	urls := make([]string, len(ms))
	for i, m := range ms {
		urls[i] = m.ClientURL
	}
	return []string{"--etcd-endpoints", strings.Join(urls, ",")}
}

// startEtcdCluster starts every member of the external etcd cluster, then waits for each to answer.
// (A member only becomes healthy once a quorum runs, so they all start before any is waited for.)
func (l *Lab) startEtcdCluster(ctx context.Context) error {
	for i := range l.Etcd {
		if err := l.startProc(ctx, "etcd member "+l.Etcd[i].Name, &l.Etcd[i].Proc, nil); err != nil {
			return err
		}
	}
	for i := range l.Etcd {
		m := &l.Etcd[i]
		if err := l.waitReady(ctx, "etcd member "+m.Name, &m.Proc, l.memberAnswers(m)); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) memberAnswers(m *Member) func() error {
	return func() error { return l.inUnderlay("wget", "-q", "-O", "/dev/null", m.ClientURL+"/version") }
}

// member returns member n (1-based) of the external etcd cluster.
func (l *Lab) member(n int) (*Member, error) {
	if len(l.Etcd) == 0 {
		return nil, fmt.Errorf("etcd member %d: this lab runs an embedded etcd inside the controller and has no etcd members; build the lab with an external etcd: %w", n, errdefs.ErrNotFound)
	}
	if n < 1 || n > len(l.Etcd) {
		return nil, fmt.Errorf("etcd member %d: the lab's etcd has members 1 to %d: %w", n, len(l.Etcd), errdefs.ErrNotFound)
	}
	return &l.Etcd[n-1], nil
}

// KillEtcd SIGKILLs member n (1-based) of the external etcd cluster and waits until it is gone.
func (l *Lab) KillEtcd(n int) error {
	m, err := l.member(n)
	if err != nil {
		return err
	}
	return l.killProc("etcd member "+m.Name, &m.Proc, syscall.SIGKILL)
}

// StartEtcd starts member n (1-based) of the external etcd cluster again, with its data directory and
// flags, and waits until it answers.
func (l *Lab) StartEtcd(ctx context.Context, n int) error {
	m, err := l.member(n)
	if err != nil {
		return err
	}
	return l.startProc(ctx, "etcd member "+m.Name, &m.Proc, l.memberAnswers(m))
}
