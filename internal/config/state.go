package config

import (
	"path/filepath"
	"strings"
)

// DefaultStateDir is where provision keeps its state when --state-dir is not given,
// as the XDG base directory specification has it: $XDG_STATE_HOME/provision (only an
// absolute XDG_STATE_HOME counts), else $HOME/.local/state/provision. A root service
// without HOME (a bare systemd unit, cron) gets /var/lib/provision, where system
// services keep their state.
func DefaultStateDir(getenv func(string) string, euid int) (string, error) {
	if x := getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "provision"), nil
	}
	if home := getenv("HOME"); filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "provision"), nil
	}
	if euid == 0 {
		return "/var/lib/provision", nil
	}
	return "", errorf("pass --state-dir DIR (or set PROVISION_STATE_DIR), e.g. StateDirectory=provision with --state-dir ${STATE_DIRECTORY} in a systemd unit",
		"cannot tell where to keep the journals: neither XDG_STATE_HOME nor HOME is set")
}

// setStateDir fills StateDir with the default when it is not given, and makes it
// absolute, so that a run started from another directory finds the same journals.
func (c *Config) setStateDir(getenv func(string) string, euid int) error {
	dir := c.StateDir
	switch {
	case dir == "":
		d, err := DefaultStateDir(getenv, euid)
		if err != nil {
			return err
		}
		dir = d
	case dir == "~" || strings.HasPrefix(dir, "~/"):
		// A config file's "~/..." is not expanded by a shell.
		home := getenv("HOME")
		if !filepath.IsAbs(home) {
			return errorf("give an absolute path", "--state-dir %s: HOME is not set", dir)
		}
		dir = filepath.Join(home, strings.TrimPrefix(dir, "~"))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return errorf("give an absolute path", "--state-dir %s: %v", dir, err)
	}
	c.StateDir = abs
	return nil
}
