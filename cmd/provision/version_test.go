package main

import (
	"runtime/debug"
	"testing"
)

// TestVersionText: what provision version prints for each way provision is built.
func TestVersionText(t *testing.T) {
	t.Parallel()
	checkout := func(modified string) *debug.BuildInfo {
		return &debug.BuildInfo{
			GoVersion: "go1.26.8",
			Main:      debug.Module{Path: "github.com/provision-matrix/provision", Version: "v0.0.0-20260102030405-1a2b3c4d5e6f+dirty"},
			Settings: []debug.BuildSetting{
				{Key: "GOOS", Value: "linux"},
				{Key: "GOARCH", Value: "amd64"},
				{Key: "vcs", Value: "git"},
				{Key: "vcs.revision", Value: "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"},
				{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
				{Key: "vcs.modified", Value: modified},
			},
		}
	}
	installed := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/provision-matrix/provision", Version: "v1.2.0"},
		Settings:  []debug.BuildSetting{{Key: "GOOS", Value: "darwin"}, {Key: "GOARCH", Value: "arm64"}},
	}
	noVCS := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	tests := []struct {
		name    string
		stamped string
		bi      *debug.BuildInfo
		want    string
	}{
		{"go build in a checkout with changes", "", checkout("true"),
			"provision v0.0.0-20260102030405-1a2b3c4d5e6f+dirty\n" +
				"commit 1a2b3c4d5e6f (2026-01-02T03:04:05Z), with uncommitted changes\n" +
				"built with go1.26.8 linux/amd64\n"},
		{"make build in a clean checkout", "v1.2.0-3-g1a2b3c4", checkout("false"),
			"provision v1.2.0-3-g1a2b3c4\n" +
				"commit 1a2b3c4d5e6f (2026-01-02T03:04:05Z), no uncommitted changes\n" +
				"built with go1.26.8 linux/amd64\n"},
		{"go install @v1.2.0", "", installed,
			"provision v1.2.0\nbuilt with go1.26.8 darwin/arm64\n"},
		{"make release, no commit recorded", "v1.2.0", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"provision v1.2.0\nbuilt with go1.26.8\n"},
		{"go build -buildvcs=false", "", noVCS,
			"provision (devel)\nno commit recorded: built outside a git checkout, or with -buildvcs=false\nbuilt with go1.26.8\n"},
		{"no build information", "", nil, "provision (unknown)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := versionText(tt.stamped, tt.bi); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
