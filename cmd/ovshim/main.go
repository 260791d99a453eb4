// Command ovshim is the per-container shim ovagent starts (runtime/shim): a small binary, so that
// starting one per container costs little. `ovagent shim` is the same program.
package main

import (
	"fmt"
	"os"

	"github.com/ovnet/ov/cmd/internal/shimcmd"
)

func main() {
	if err := shimcmd.New(false).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ovshim:", err)
		os.Exit(1)
	}
}
