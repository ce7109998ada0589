package safefile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Output is one file a run writes, named by the flag that chose it.
type Output struct {
	Flag string // e.g. "--report"
	Path string // "" or "-" (standard output) is not a file and is skipped
	// Dir: the path names a directory the run writes files into.
	Dir bool
}

// CheckDistinct refuses outputs that are the same file: the same path once cleaned,
// one a link to another, or two names of one file (os.SameFile). A report written
// over the credentials file would destroy every password in it. A directory output
// also clashes with a file inside it of the same... name, which cannot both exist.
func CheckDistinct(outs ...Output) error {
	type seen struct {
		Output
		abs string
		fi  os.FileInfo
	}
	var all []seen
	for _, o := range outs {
		if o.Path == "" || o.Path == "-" {
			continue
		}
		abs, err := filepath.Abs(o.Path)
		if err != nil {
			return err
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		} else if real, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
			abs = filepath.Join(real, filepath.Base(abs))
		}
		fi, _ := os.Stat(abs)
		cur := seen{o, abs, fi}
		for _, p := range all {
			same := p.abs == cur.abs || (p.fi != nil && cur.fi != nil && os.SameFile(p.fi, cur.fi))
			if same {
				return fmt.Errorf("%s %s and %s %s are the same file", p.Flag, p.Path, cur.Flag, cur.Path)
			}
		}
		all = append(all, cur)
	}
	return nil
}
