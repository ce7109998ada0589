package password_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/provision-matrix/provision/internal/password"
)

var strict = password.Policy{MinLength: 8, RequireDigit: true, RequireSymbol: true, RequireLowercase: true, RequireUppercase: true}

// seeded returns a reproducible random source.
func seeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// shellSpecial holds every character that means something to sh, bash or zsh
// somewhere in a word, or that would need quoting.
const shellSpecial = " \t\n|&;<>()$`\\\"'*?[]{}#~=%!^,:@+/"

func TestGenerateProperties(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		n      int
		length int
		policy password.Policy
	}{
		{"default length, strict policy", 10000, password.DefaultLength, strict},
		{"shortest length, strict policy", 2000, password.MinGeneratedLength, strict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, err := password.NewGenerator(tc.length, tc.policy, nil)
			if err != nil {
				t.Fatal(err)
			}
			all := make([]string, 0, tc.n)
			for range tc.n {
				pw, err := g.Generate()
				if err != nil {
					t.Fatal(err)
				}
				checkPassword(t, pw, tc.length, tc.policy)
				all = append(all, pw)
			}
			checkShellWords(t, all[:1000])
		})
	}
}

func checkPassword(t *testing.T, pw string, length int, p password.Policy) {
	t.Helper()
	if len(pw) != length {
		t.Fatalf("password %q has %d bytes, want %d", pw, len(pw), length)
	}
	if err := p.Check(pw); err != nil {
		t.Fatalf("generated password %q fails the policy: %v", pw, err)
	}
	if c := pw[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
		t.Fatalf("password %q does not start with a letter", pw)
	}
	if i := strings.IndexAny(pw, shellSpecial); i >= 0 {
		t.Fatalf("password %q contains shell-special %q", pw, pw[i])
	}

	// CSV: a field needing no quotes, read back unchanged.
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.Write([]string{pw, "x"}); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if got := buf.String(); got != pw+",x\n" {
		t.Fatalf("CSV writer quoted %q as %q", pw, got)
	}
	rec, err := csv.NewReader(strings.NewReader(pw + ",x\n")).Read()
	if err != nil || rec[0] != pw {
		t.Fatalf("CSV read back %q as %q (%v)", pw, rec, err)
	}

	// YAML: the encoder leaves it plain, and a plain scalar parses back to the
	// same string.
	out, err := yaml.Marshal(map[string]string{"p": pw})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "p: "+pw+"\n" {
		t.Fatalf("YAML encoder wrote %q as %q, want it plain", pw, got)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("p: "+pw+"\n"), &doc); err != nil {
		t.Fatalf("YAML plain scalar %q: %v", pw, err)
	}
	v := doc.Content[0].Content[1]
	if v.Tag != "!!str" || v.Value != pw || v.Style != 0 {
		t.Fatalf("YAML read plain %q as tag %s value %q style %v", pw, v.Tag, v.Value, v.Style)
	}
}

// checkShellWords has a real shell print the passwords given as unquoted
// words, and compares.
func checkShellWords(t *testing.T, pws []string) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Log("no sh on PATH; shell check by character set only")
		return
	}
	script := "printf '%s\\n' " + strings.Join(pws, " ") + "\n"
	cmd := exec.Command(sh, "-s")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	if got, want := string(out), strings.Join(pws, "\n")+"\n"; got != want {
		t.Fatalf("sh changed unquoted passwords")
	}
}

func TestGenerateDeterministic(t *testing.T) {
	t.Parallel()
	gen := func(seed byte) []string {
		g, err := password.NewGenerator(password.DefaultLength, strict, seeded(seed))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for range 5 {
			pw, err := g.Generate()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, pw)
		}
		return out
	}
	a, b, c := gen(1), gen(1), gen(2)
	if strings.Join(a, " ") != strings.Join(b, " ") {
		t.Errorf("same seed gave %q and %q", a, b)
	}
	if strings.Join(a, " ") == strings.Join(c, " ") {
		t.Errorf("different seeds gave the same passwords %q", a)
	}
	seen := map[string]bool{}
	for _, pw := range a {
		if seen[pw] {
			t.Errorf("password %q generated twice", pw)
		}
		seen[pw] = true
	}
}

// TestGenerateUniform checks that, without a policy, every character after
// the first is uniform over the alphabet and the first over the letters
// (chi-squared, fixed seed, so the outcome never changes between runs).
func TestGenerateUniform(t *testing.T) {
	t.Parallel()
	g, err := password.NewGenerator(password.DefaultLength, password.Policy{}, seeded(3))
	if err != nil {
		t.Fatal(err)
	}
	first, rest := map[byte]int{}, map[byte]int{}
	const n = 10000
	for range n {
		pw, err := g.Generate()
		if err != nil {
			t.Fatal(err)
		}
		first[pw[0]]++
		for i := 1; i < len(pw); i++ {
			rest[pw[i]]++
		}
	}
	letters := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	alphabet := letters + "0123456789" + password.Symbols
	chi := func(counts map[byte]int, set string, total int) float64 {
		if len(counts) != len(set) {
			t.Errorf("drew %d distinct characters, want the %d of %q", len(counts), len(set), set)
		}
		exp := float64(total) / float64(len(set))
		var x float64
		for i := 0; i < len(set); i++ {
			d := float64(counts[set[i]]) - exp
			x += d * d / exp
		}
		return x
	}
	// 99.9th percentiles of chi-squared with 51 and 64 degrees of freedom.
	if x := chi(first, letters, n); x > 90 {
		t.Errorf("first character: chi-squared %.1f over 51 degrees of freedom, not uniform", x)
	}
	if x := chi(rest, alphabet, n*(password.DefaultLength-1)); x > 106 {
		t.Errorf("other characters: chi-squared %.1f over 64 degrees of freedom, not uniform", x)
	}
}

func TestEntropyBits(t *testing.T) {
	t.Parallel()
	g, err := password.NewGenerator(24, password.Policy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := math.Log2(52) + 23*math.Log2(65)
	if got := g.EntropyBits(); math.Abs(got-want) > 1e-9 {
		t.Errorf("EntropyBits() = %v, want %v (a letter, then 23 of 65)", got, want)
	}

	// With a policy, the generator returns only the passwords that meet it,
	// uniformly, so 2^(bits with policy - bits without) must be the share of
	// unconstrained draws that meet the policy. Measure it.
	free, err := password.NewGenerator(8, password.Policy{}, seeded(4))
	if err != nil {
		t.Fatal(err)
	}
	strictGen, err := password.NewGenerator(8, strict, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10000
	meets := 0
	for range n {
		pw, err := free.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if strict.Check(pw) == nil {
			meets++
		}
	}
	share := float64(meets) / n
	predicted := math.Exp2(strictGen.EntropyBits() - free.EntropyBits())
	if math.Abs(share-predicted) > 0.015 {
		t.Errorf("%.3f of free draws meet the policy, but EntropyBits predicts %.3f", share, predicted)
	}
	if predicted < 0.15 {
		t.Errorf("acceptance %.3f at the shortest length is lower than the generator's retry bound assumes", predicted)
	}
}

func TestNewGeneratorErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		length int
		policy password.Policy
		want   string
	}{
		{"shorter than the policy", 10, password.Policy{MinLength: 16}, "choose a length of at least 16"},
		{"shorter than the floor", 6, password.Policy{}, "choose a length of at least 8"},
		{"longer than bcrypt reads", 80, password.Policy{}, "choose a length of at most 72"},
		{"policy beyond bcrypt", 72, password.Policy{MinLength: 80}, "supply passwords in the roster"},
	}
	for _, tt := range tests {
		_, err := password.NewGenerator(tt.length, tt.policy, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: NewGenerator(%d, %+v) = %v, want an error with %q", tt.name, tt.length, tt.policy, err, tt.want)
		}
	}
	for _, length := range []int{8, 24, 72} {
		if _, err := password.NewGenerator(length, strict, nil); err != nil {
			t.Errorf("NewGenerator(%d, strict) = %v", length, err)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("entropy pool on fire") }

func TestGenerateBrokenRandom(t *testing.T) {
	t.Parallel()
	// All zeros always draws 'a': it can never meet a digit requirement, and
	// Generate must give up rather than loop forever.
	g, err := password.NewGenerator(8, password.Policy{RequireDigit: true}, zeros{})
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := g.Generate(); err == nil || !strings.Contains(err.Error(), "random source") {
		t.Errorf("Generate with a stuck source = %q, %v; want an error about the random source", pw, err)
	}
	g, err = password.NewGenerator(8, password.Policy{}, failing{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Generate(); err == nil || !strings.Contains(err.Error(), "on fire") {
		t.Errorf("Generate with a failing source = %v, want its error", err)
	}
}

func TestGenerateConcurrent(t *testing.T) {
	t.Parallel()
	// An injected reader need not be safe for concurrent use; the generator
	// must be (run with -race).
	g, err := password.NewGenerator(16, strict, seeded(5))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				if _, err := g.Generate(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkGenerate(b *testing.B) {
	g, err := password.NewGenerator(password.DefaultLength, strict, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := g.Generate(); err != nil {
			b.Fatal(err)
		}
	}
}
