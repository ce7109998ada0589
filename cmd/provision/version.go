package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/buildinfo"
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
			fmt.Fprint(io.stdout, versionText(version, buildinfo.Read()))
		},
	}
}

// versionText is what provision version prints (buildinfo.Text).
func versionText(stamped string, bi *debug.BuildInfo) string {
	return buildinfo.Text("provision", stamped, bi)
}

// shortVersion is the version alone, for --version and the manual page.
func shortVersion() string {
	v, _, _ := strings.Cut(versionText(version, buildinfo.Read()), "\n")
	return strings.TrimPrefix(v, "provision ")
}
