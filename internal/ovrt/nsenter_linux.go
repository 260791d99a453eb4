package ovrt

// The C constructor in nsenter_linux.c joins user and mount namespaces before the Go runtime starts
// threads (setns into those needs a single-threaded caller). See docs/runtime.md.

// #cgo CFLAGS: -Wall
import "C"
