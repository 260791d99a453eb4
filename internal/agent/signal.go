package agent

import (
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func unixSignalName(s syscall.Signal) string { return unix.SignalName(s) }

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }
