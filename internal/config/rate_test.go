package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// --rate takes a number of registrations per second, 0 for none, or auto; with auto
// the default --concurrency becomes the adaptive limit's ceiling.
func TestRate(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", "s3cret\n", 0o600)
	cfgFile := writeFile(t, dir, "auto.yaml", "rate: auto\n", 0o644)
	roster := filepath.Join(dir, "team.csv")
	for _, c := range []struct {
		name     string
		args     []string
		env      map[string]string
		rate     float64
		auto     bool
		conc     int
		errorHas string
	}{
		{name: "default", rate: DefaultRate, conc: DefaultConcurrency},
		{name: "fixed", args: []string{"--rate", "2.5"}, rate: 2.5, conc: DefaultConcurrency},
		{name: "no limit", args: []string{"--rate", "0"}, rate: 0, conc: DefaultConcurrency},
		{name: "auto", args: []string{"--rate", "auto"}, auto: true, conc: DefaultAutoConcurrency},
		{name: "auto with a ceiling", args: []string{"--rate", "AUTO", "--concurrency", "8"}, auto: true, conc: 8},
		{name: "auto from the environment", env: map[string]string{"PROVISION_RATE": "auto"}, auto: true, conc: DefaultAutoConcurrency},
		{name: "auto from a config file", args: []string{"--config", cfgFile}, auto: true, conc: DefaultAutoConcurrency},
		{name: "garbage", args: []string{"--rate", "fast"}, errorHas: `rate: "fast" is not a valid value`},
		{name: "negative", args: []string{"--rate", "-1"}, errorHas: "or auto"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--shared-secret-file", secret}, c.args...)
			cfg, err := load(t, append(args, roster), c.env)
			if c.errorHas != "" {
				if err == nil || !strings.Contains(err.Error(), c.errorHas) {
					t.Fatalf("error %v, want one containing %q", err, c.errorHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Rate != c.rate || cfg.RateAuto != c.auto || cfg.Concurrency != c.conc {
				t.Errorf("rate %v auto %v concurrency %d, want %v %v %d", cfg.Rate, cfg.RateAuto, cfg.Concurrency, c.rate, c.auto, c.conc)
			}
		})
	}
}
