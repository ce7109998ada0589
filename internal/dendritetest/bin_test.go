package dendritetest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBinDir(t *testing.T) {
	tests := []struct {
		name                  string
		bin, cache, xdg, home string
		want                  string
	}{
		{"explicit binaries", "/opt/dendrite", "/c", "/x", "/h", "/opt/dendrite"},
		{"project cache", "", "/c", "/x", "/h", "/c/dendrite-v0.13.8/bin"},
		{"XDG cache", "", "", "/x", "/h", "/x/provision/dendrite-v0.13.8/bin"},
		{"home", "", "", "", "/h", "/h/.cache/provision/dendrite-v0.13.8/bin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PROVISION_DENDRITE_BIN", tt.bin)
			t.Setenv("PROVISION_CACHE", tt.cache)
			t.Setenv("XDG_CACHE_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			got, err := binDir()
			if err != nil {
				t.Fatal(err)
			}
			if got != filepath.FromSlash(tt.want) {
				t.Errorf("binDir() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBinaryNotInstalled(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PROVISION_DENDRITE_BIN", dir)
	// A dendrite alone is not an install: the config tools are needed too.
	if err := os.WriteFile(filepath.Join(dir, "dendrite"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Binary()
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "run scripts/dendrite install") {
		t.Errorf("Binary() error = %v, want ErrNotInstalled with the install hint", err)
	}
	if _, err := Start(context.Background(), Options{}); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Start() error = %v, want ErrNotInstalled", err)
	}
}

func TestStartRejectsBadCost(t *testing.T) {
	for _, cost := range []int{-1, 3, 32} {
		if _, err := Start(context.Background(), Options{BcryptCost: cost}); err == nil || !strings.Contains(err.Error(), "4 to 31") {
			t.Errorf("Start(BcryptCost: %d) error = %v, want a range error", cost, err)
		}
	}
}
