package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/provision-matrix/provision/internal/templates"
)

const initLong = `Write a commented provision.yaml and two roster templates (roster.csv and
roster.yaml) into DIR (default: the current directory), to start from.

init never overwrites anything: if one of the files exists, it writes none of them
and says which. No secret is written: provision.yaml points at the files that hold
them.`

const initExample = `  # Start a new setup in ./onboarding
  provision init onboarding
  cd onboarding

  # Make your age key, then put its public key under "recipient:" in provision.yaml
  age-keygen -o key.txt

  # Fill in roster.csv, check it, and see what would happen
  provision check roster.csv
  provision --config provision.yaml --dry-run roster.csv`

func newInitCmd(io streams) *cobra.Command {
	return &cobra.Command{
		Use:     "init [DIR]",
		Short:   "Write a commented provision.yaml and roster templates",
		Long:    initLong,
		Example: initExample,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usage(fmt.Errorf("init takes at most one directory, got %d arguments", len(args)), "provision init [DIR]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			if err := writeNew(dir, templates.Files, templates.Contents()); err != nil {
				return err
			}
			fmt.Fprintf(io.stdout, "wrote %s in %s\n\n%s", strings.Join(templates.Files, ", "), dir, templates.NextSteps(dir))
			return nil
		},
	}
}

// writeNew creates every file of names in dir, or none: an existing one stops it
// before anything is written, and a failure part way removes what it wrote.
func writeNew(dir string, names []string, contents map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return usageError{fmt.Errorf("init: %w", err)}
	}
	var existing []string
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			existing = append(existing, filepath.Join(dir, n))
		}
	}
	if len(existing) > 0 {
		verb, them := "exist", "them"
		if len(existing) == 1 {
			verb, them = "exists", "it"
		}
		return usage(fmt.Errorf("init: %s already %s; nothing was written", strings.Join(existing, ", "), verb),
			fmt.Sprintf("move %s away, or run provision init in another directory", them))
	}
	var written []string
	for _, n := range names {
		path := filepath.Join(dir, n)
		// O_EXCL: a file that appeared since the check above is not replaced.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, err = f.WriteString(contents[n])
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(path)
			}
		}
		if err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			if errors.Is(err, fs.ErrExist) {
				return usageError{fmt.Errorf("init: %s appeared while init was writing; nothing was written", path)}
			}
			return usageError{fmt.Errorf("init: %w", err)}
		}
		written = append(written, path)
	}
	return nil
}
