package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Size caps. Every file the config package reads goes through readCapped, so that
// naming /dev/zero, a log file or a disk image by mistake fails at once instead of
// filling memory.
const (
	// maxSecretFile bounds a secret file: a shared secret, token or password is a few
	// dozen bytes.
	maxSecretFile = 64 << 10
	// maxConfigFile bounds provision's own config file and each Synapse config file
	// (homeserver.yaml with every comment of the sample is about 150 KiB).
	maxConfigFile = 1 << 20
)

// readCapped reads a whole file of at most limit bytes. Its errors name the file and
// never hold its content.
func readCapped(path string, limit int64) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	if st.IsDir() {
		return nil, nil, fmt.Errorf("%s is a directory, not a file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	if int64(len(b)) > limit {
		return nil, nil, &tooLargeError{path: path, limit: limit}
	}
	return b, st, nil
}

type tooLargeError struct {
	path  string
	limit int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %s", e.path, sizeString(e.limit))
}

func sizeString(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n>>10, 10) + " KiB"
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// yamlError is a YAML file that is not a mapping of settings. It holds a position and
// a reason chosen from a fixed set, never text from the file: a secret file passed to
// --config by mistake must not be echoed to a terminal or a log (the YAML library's
// own messages quote values, "cannot unmarshal !!str `s3cr...`").
type yamlError struct {
	Line, Column int // 0 when unknown
	Reason       string
	scalar       bool // the whole file is one plain value, as a secret file is
}

func (e *yamlError) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Reason)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return e.Reason
}

// yamlReasons are the YAML library's syntax messages that quote nothing from the
// input; any other message becomes "not valid YAML".
var yamlReasons = []string{
	"mapping values are not allowed in this context",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"found unexpected end of stream",
	"found unexpected document indicator",
	"control characters are not allowed",
	"invalid leading UTF-8 octet",
	"invalid trailing UTF-8 octet",
	"block sequence entries are not allowed in this context",
	"could not find expected ':'",
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// parseYAMLMapping reads a YAML document whose top level is a mapping with plain,
// distinct keys. An empty document is an empty mapping.
func parseYAMLMapping(b []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		e := &yamlError{Reason: "not valid YAML"}
		msg := err.Error()
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			msg = msg[len(m[0]):]
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		for _, r := range yamlReasons {
			if msg == r {
				e.Reason = "not valid YAML: " + r
			}
		}
		if msg == "found character that cannot start any token" || msg == "found a tab character that violates indentation" {
			e.Reason = "not valid YAML: a character that cannot start a value (a tab used for indentation?)"
		}
		return nil, e
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return map[string]any{}, nil
	}
	root := doc.Content[0]
	switch root.Kind {
	case yaml.MappingNode:
	case yaml.ScalarNode:
		if root.Tag == "!!null" {
			return map[string]any{}, nil
		}
		return nil, &yamlError{Line: root.Line, Column: root.Column, Reason: "the file is a single value, not key: value settings", scalar: true}
	default:
		return nil, &yamlError{Line: root.Line, Column: root.Column, Reason: "the top level is not key: value settings"}
	}
	first := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			return nil, &yamlError{Line: k.Line, Column: k.Column, Reason: "a key must be a plain name"}
		}
		lk := strings.ToLower(k.Value)
		if at, dup := first[lk]; dup {
			return nil, &yamlError{Line: k.Line, Column: k.Column, Reason: fmt.Sprintf("key %q is given twice (first on line %d)", printableKey(k.Value), at)}
		}
		first[lk] = k.Line
	}
	m := map[string]any{}
	if err := root.Decode(&m); err != nil {
		return nil, &yamlError{Line: root.Line, Column: root.Column, Reason: "a value cannot be read"}
	}
	return m, nil
}

// printableKey keeps a key from a file fit for a terminal: at most 64 characters,
// without control characters.
func printableKey(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 64 {
		s = string(r[:64]) + "…"
	}
	return s
}
