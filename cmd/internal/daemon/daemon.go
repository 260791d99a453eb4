// Package daemon holds what ovagent and ovcontroller read the same way: the YAML configuration file
// and the logging flags.
package daemon

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/viper"
)

// ReadConfigFile loads the YAML file named by the "config" key into v, or defaultPath when no file is
// named and defaultPath exists. Keys in the file are the flag names.
func ReadConfigFile(v *viper.Viper, defaultPath string) error {
	path := v.GetString("config")
	if path == "" {
		if _, err := os.Stat(defaultPath); err != nil {
			return nil
		}
		path = defaultPath
	}
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	return nil
}

// NewLogger returns a logger to stderr for --log-level (debug, info, warn, error) and --log-format
// (text, json).
func NewLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}
