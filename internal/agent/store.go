package agent

import (
	"encoding/json"
	"github.com/ovnet/ov/internal/atomicfile"
	"os"
)

// writeJSONFile replaces path with v as JSON, atomically against crashes of the agent; there is no
// fsync because nothing the file describes (containers under /run) survives a crash of the machine.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
