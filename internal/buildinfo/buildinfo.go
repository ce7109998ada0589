// Package buildinfo says which build of a program is running: its version, the
// commit it was built from, and the Go release and platform, from what the Go
// toolchain records in the binary.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Read is the build information of this binary, or nil for a binary built without
// module support.
func Read() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// Text is what "program version" prints. The first line is the version: stamped if
// it is set (-ldflags -X), else the module's (a tag for `go install ...@v1.2.0`;
// since Go 1.24, a pseudo-version made from the commit for a build in a checkout).
// Then, when Go recorded it, the commit the binary was built from and whether the
// checkout had uncommitted changes, and the Go release and platform.
func Text(program, stamped string, bi *debug.BuildInfo) string {
	if bi == nil {
		v := stamped
		if v == "" {
			v = "(unknown)"
		}
		return program + " " + v + "\n"
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
	fmt.Fprintf(&b, "%s %s\n", program, v)
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
