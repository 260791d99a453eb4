package wireguard

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// userspace is wireguard-go on a TUN device, running in this process. tun.CreateTUN turns on the
// Linux offloads (IFF_VNET_HDR with TSO, and UDP GSO/GRO on the sockets of conn's default bind), so
// that wireguard-go handles batches of segments rather than one packet per system call.
type userspace struct {
	dev       *device.Device
	port      int
	keepalive int
}

func openUserspace(cfg Config, mtu int, log *slog.Logger) (backend, error) {
	var td tun.Device
	var err error
	if cfg.NoOffloads {
		td, err = plainTUN(cfg.Name, mtu)
	} else {
		td, err = tun.CreateTUN(cfg.Name, mtu)
	}
	if err != nil {
		return nil, err
	}
	logger := &device.Logger{
		Verbosef: func(string, ...any) {},
		Errorf:   func(format string, args ...any) { log.Debug("wireguard-go: " + fmt.Sprintf(format, args...)) },
	}
	d := device.NewDevice(td, conn.NewDefaultBind(), logger)
	if err := d.IpcSet(fmt.Sprintf("listen_port=%d\n", cfg.Port)); err != nil {
		d.Close()
		return nil, fmt.Errorf("listen on UDP port %d: %w", cfg.Port, err)
	}
	if err := d.Up(); err != nil {
		d.Close()
		return nil, fmt.Errorf("bring wireguard-go up: %w", err)
	}
	return &userspace{dev: d, port: cfg.Port, keepalive: cfg.Keepalive}, nil
}

func hexKey(k wgtypes.Key) string { return hex.EncodeToString(k[:]) }

// configure speaks wireguard-go's configuration protocol (the UAPI of wg(8)): an existing peer keeps
// its session when it is set again.
func (u *userspace) configure(priv *wgtypes.Key, remove []wgtypes.Key, set []peerConf) error {
	var b strings.Builder
	if priv != nil {
		fmt.Fprintf(&b, "private_key=%s\n", hexKey(*priv))
	}
	for _, k := range remove {
		fmt.Fprintf(&b, "public_key=%s\nremove=true\n", hexKey(k))
	}
	for _, p := range set {
		fmt.Fprintf(&b, "public_key=%s\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s/32\npersistent_keepalive_interval=%d\n",
			hexKey(p.key), p.endpoint, p.addr, u.keepalive)
	}
	return u.dev.IpcSet(b.String())
}

func (u *userspace) alive() bool {
	select {
	case <-u.dev.Wait():
		return false
	default:
		return true
	}
}

func (u *userspace) close()       { u.dev.Close() }
func (u *userspace) kind() string { return "wireguard-go (userspace, TUN)" }

// plainTUN makes a TUN device without IFF_VNET_HDR (Config.NoOffloads).
func plainTUN(name string, mtu int) (tun.Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return tun.CreateTUNFromFile(os.NewFile(uintptr(fd), "/dev/net/tun"), mtu)
}
