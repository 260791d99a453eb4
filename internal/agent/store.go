package agent

import (
	"encoding/json"
	"os"

	"github.com/ovnet/ov/internal/atomicfile"
)

// writeJSONFile replaces path with v as JSON, atomically against crashes of the agent. There is no
// fsync: it is for files under the run directory (bundles), which do not outlive the machine.
func writeJSONFile(path string, v any) error {
	b, err := marshalFile(v)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// writeJSONFileSync is writeJSONFile made durable (the file and its directory are flushed): it is for
// records under the root (container.json), which outlive a reboot.
func writeJSONFileSync(path string, v any) error {
	b, err := marshalFile(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteSync(path, b, 0o600)
}

func marshalFile(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func readJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
