package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStat is what /proc says of one process: CPU seconds (user + system) and peak RSS (VmHWM).
type procStat struct {
	cpu   float64 // seconds
	hwmMB float64
	rssMB float64 // now (VmRSS)
}

// readProc reads /proc/PID/stat (utime, stime in clock ticks of 100 Hz) and /proc/PID/status (VmHWM).
func readProc(pid int) (procStat, error) {
	var ps procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return ps, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return ps, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14 of the whole line
	st, _ := strconv.ParseFloat(f[12], 64)
	ps.cpu = (ut + st) / 100
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			ps.hwmMB = kb / 1024
		}
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			ps.rssMB = kb / 1024
		}
	}
	return ps, nil
}

// raiseNoFile raises the open files limit (20,000 on this machine) where root may: the per-network
// watch streams of 1,000 hosts are 19,000 connections, at both ends. A controller serving that many
// streams needs the same (LimitNOFILE).
func raiseNoFile() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Cur >= 1<<18 {
		return
	}
	want := syscall.Rlimit{Cur: 1 << 18, Max: max(lim.Max, 1<<18)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// freePort returns a TCP port on loopback that nobody listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// etcdBinary is the external etcd (Debian package etcd-server).
const etcdBinary = "/usr/bin/etcd"

// etcdCluster is a 3-member etcd cluster of etcdBinary processes on loopback, as
// internal/controller/store/storetest starts one for the failover tests.
type etcdCluster struct {
	cmds      []*exec.Cmd
	endpoints []string
}

func startEtcdCluster(dir string, n int) (*etcdCluster, error) {
	if _, err := os.Stat(etcdBinary); err != nil {
		return nil, fmt.Errorf("-etcd external needs %s (Debian package etcd-server; make deps installs it)", etcdBinary)
	}
	c := &etcdCluster{}
	var initial, peers []string
	for i := 0; i < n; i++ {
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		c.endpoints = append(c.endpoints, fmt.Sprintf("http://127.0.0.1:%d", cp))
		peers = append(peers, fmt.Sprintf("http://127.0.0.1:%d", pp))
		initial = append(initial, fmt.Sprintf("m%d=%s", i, peers[i]))
	}
	for i := 0; i < n; i++ {
		mdir := filepath.Join(dir, fmt.Sprintf("etcd-m%d", i))
		log, err := os.Create(mdir + ".log")
		if err != nil {
			c.stop()
			return nil, err
		}
		cmd := exec.Command(etcdBinary, "--name", fmt.Sprintf("m%d", i), "--data-dir", mdir,
			"--listen-client-urls", c.endpoints[i], "--advertise-client-urls", c.endpoints[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "ovbench-scale", "--quota-backend-bytes", "8589934592")
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			c.stop()
			return nil, fmt.Errorf("start etcd member %d: %w", i, err)
		}
		c.cmds = append(c.cmds, cmd)
	}
	for _, ep := range c.endpoints {
		addr := strings.TrimPrefix(ep, "http://")
		deadline := time.Now().Add(30 * time.Second)
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				c.stop()
				return nil, fmt.Errorf("etcd member at %s did not come up within 30s (log in %s)", ep, dir)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c, nil
}

// stats sums the members' CPU and their peak RSS.
func (c *etcdCluster) stats() procStat {
	var out procStat
	for _, cmd := range c.cmds {
		if ps, err := readProc(cmd.Process.Pid); err == nil {
			out.cpu += ps.cpu
			out.hwmMB = max(out.hwmMB, ps.hwmMB)
		}
	}
	return out
}

func (c *etcdCluster) stop() {
	for _, cmd := range c.cmds {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	c.cmds = nil
}
