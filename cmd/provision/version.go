package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version overrides the version Go records in the binary. `make build` and `make
// release` set it from `git describe --tags --always --dirty`
// (-ldflags "-X main.version=..."); a plain `go build` or `go install` leaves it empty.
var version string

func newVersionCmd(io streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print provision's version and the commit it was built from",
		Long: `Print provision's version and, for a build from a git checkout, the commit it was
built from and whether that checkout had uncommitted changes. Include it when you
report a problem.`,
		Example: "  provision version",
		Args:    cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprint(io.stdout, versionText(version, readBuildInfo()))
		},
	}
}

// readBuildInfo is the build information of this binary, or nil for a binary built
// without module support.
func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// shortVersion is the version alone, for --version and the manual page.
func shortVersion() string {
	v, _, _ := strings.Cut(versionText(version, readBuildInfo()), "\n")
	return strings.TrimPrefix(v, "provision ")
}

// versionText is what provision version prints. The first line is the version: the
// stamped one if there is one, else the module's (a tag for `go install ...@v1.2.0`;
// since Go 1.24, a pseudo-version made from the commit for a build in a checkout).
// Then, when Go recorded it, the commit the binary was built from and whether the
// checkout had uncommitted changes, and the Go release and platform.
func versionText(stamped string, bi *debug.BuildInfo) string {
	if bi == nil {
		v := stamped
		if v == "" {
			v = "(unknown)"
		}
		return "provision " + v + "\n"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	v := stamped
	if v == "" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "provision %s\n", v)
	if rev := settings["vcs.revision"]; rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, "commit %s", rev)
		if t := settings["vcs.time"]; t != "" {
			fmt.Fprintf(&b, " (%s)", t)
		}
		switch settings["vcs.modified"] {
		case "true":
			b.WriteString(", with uncommitted changes")
		case "false":
			b.WriteString(", no uncommitted changes")
		}
		b.WriteString("\n")
	} else if v == "(devel)" {
		b.WriteString("no commit recorded: built outside a git checkout, or with -buildvcs=false\n")
	}
	built := bi.GoVersion
	if goos, goarch := settings["GOOS"], settings["GOARCH"]; goos != "" && goarch != "" {
		built += " " + goos + "/" + goarch
	}
	if built != "" {
		fmt.Fprintf(&b, "built with %s\n", built)
	}
	return b.String()
}
