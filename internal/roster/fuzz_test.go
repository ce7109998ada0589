package roster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"
)

func readSample(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func FuzzCSV(f *testing.F) {
	fuzzFormat(f, FormatCSV, "../../samples/roster.csv", []string{
		"",
		"localpart\n",
		"localpart,rooms\nalice,\"!a:hs\n#b:hs\"\nALICE,\n",
		"localpart,displayname\nalice,\"Alice\nbob,Bob\n",
		"localpart,displayname\nalice,Al\"ice\n",
		"\xef\xbb\xbflocalpart,emial\r\nren\xe9e,\x00\r\n",
		"localpart,email,admin,password,recipient,user_type\n@a:hs,a@@b,maybe, x ,\"\x01\",bot\n",
		"localpart,password,sso_provider,sso_subject\na,,oidc-okta,00uA\nb,pw,cas,x\nc,,,y\nd,,OIDC,z\ne,,oidc,00uA\nf,,oidc-a b,\xc2\xa0\n",
	})
}

func FuzzYAML(f *testing.F) {
	fuzzFormat(f, FormatYAML, "../../samples/roster.yaml", []string{
		"",
		"users: []\n",
		"- localpart: a\n---\n- localpart: b\n",
		"- &a {localpart: a}\n- <<: *a\n- *a\n",
		"users:\n  - localpart: \"a\\0b\"\n    rooms: {a: b}\n  - [x]\n  - Alice\n",
		"- {displayname: Émile, localpart: é, emial: x, email: x, email: y}\n",
		"users:\n\t- localpart: a\n",
		"version: 1\nusers:\n  - localpart: A\n  - localpart: a\n",
		"- {localpart: a, sso_provider: saml, sso_subject: x}\n- {localpart: b, sso_subject: [x]}\n- {localpart: c, sso_provider: saml, sso_subject: x}\n",
	})
}

// fuzzFormat checks that Check and Each never panic, that every error is
// an *Errors whose problems have places and print safely, and that the two
// passes agree.
func fuzzFormat(f *testing.F, format Format, sample string, seeds []string) {
	f.Add(readSample(f, sample))
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := Options{Format: format, ServerName: "example.org"}
		if len(data) > 0 && data[0]&1 == 1 {
			opts.SSOProvider = "oidc" // a subject without a provider is then fine
		}
		stats, checkErr := Check(bytes.NewReader(data), "fuzz", opts)
		checked := problemsOf(t, "Check", checkErr)
		var users []User
		eachErr := Each(bytes.NewReader(data), "fuzz", opts, func(u User) error {
			users = append(users, u)
			return nil
		})
		each := problemsOf(t, "Each", eachErr)
		if (checkErr == nil) != (eachErr == nil) {
			t.Fatalf("Check returned %v but Each returned %v", checkErr, eachErr)
		}
		if checkErr == nil {
			if len(users) != stats.Users {
				t.Fatalf("Each yielded %d users, Check counted %d", len(users), stats.Users)
			}
			for _, u := range users {
				if _, msg, _ := checkLocalpart(u.Localpart, opts.ServerName); msg != "" || u.Line < 1 {
					t.Fatalf("Each yielded an invalid user %+v: %s", u, msg)
				}
				if (u.SSOProvider == "") != (u.SSOSubject == "") || (u.SSOSubject != "" && u.Password != "") {
					t.Fatalf("Each yielded a half or password-bearing SSO binding: %+v", u)
				}
				if msg, _ := checkSSOProvider(u.SSOProvider); msg != "" {
					t.Fatalf("Each yielded an invalid SSO provider %+v: %s", u, msg)
				}
			}
			return
		}
		if checked.Total == len(checked.Problems) {
			for _, p := range each.Problems {
				if !slices.Contains(checked.Problems, p) {
					t.Fatalf("Each found %s, which Check did not:\n%v", p, checkErr)
				}
			}
		}
	})
}

func problemsOf(t *testing.T, pass string, err error) *Errors {
	if err == nil {
		return nil
	}
	errs, ok := errors.AsType[*Errors](err)
	if !ok {
		t.Fatalf("%s: got %T %v, want *Errors", pass, err, err)
	}
	if len(errs.Problems) == 0 || errs.Total < len(errs.Problems) {
		t.Fatalf("%s: %d problems kept of %d", pass, len(errs.Problems), errs.Total)
	}
	for _, p := range errs.Problems {
		if p.File != "fuzz" || p.Line < 1 || p.Column < 0 || p.Message == "" {
			t.Fatalf("%s: problem without a place or a message: %#v", pass, p)
		}
		if i := strings.IndexFunc(p.String(), unicode.IsControl); i >= 0 {
			t.Fatalf("%s: problem prints a control character: %q", pass, p.String())
		}
	}
	return errs
}

// csvRoster makes a roster of n valid users.
func csvRoster(n int) []byte {
	var b bytes.Buffer
	b.WriteString("localpart,displayname,email,admin\n")
	for i := range n {
		fmt.Fprintf(&b, "user%d,User Number %d,user%d@example.org,%t\n", i, i, i, i%50 == 0)
	}
	return b.Bytes()
}

func benchmarkCheck(b *testing.B, n int) {
	data := csvRoster(n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		stats, err := Check(bytes.NewReader(data), "bench.csv", Options{ServerName: "example.org"})
		if err != nil || stats.Users != n {
			b.Fatal(stats, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/user")
}

func BenchmarkCheckCSV(b *testing.B) { benchmarkCheck(b, 100_000) }

// BenchmarkCheckCSV1M is the million-user roster; run it alone with
// -bench CheckCSV1M -benchtime 1x.
func BenchmarkCheckCSV1M(b *testing.B) { benchmarkCheck(b, 1_000_000) }

func BenchmarkEachCSV(b *testing.B) {
	const n = 100_000
	data := csvRoster(n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		users := 0
		err := Each(bytes.NewReader(data), "bench.csv", Options{ServerName: "example.org"}, func(User) error {
			users++
			return nil
		})
		if err != nil || users != n {
			b.Fatal(users, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/user")
}

func BenchmarkCheckYAML(b *testing.B) {
	const n = 10_000
	var buf bytes.Buffer
	buf.WriteString("users:\n")
	for i := range n {
		fmt.Fprintf(&buf, "  - localpart: user%d\n    displayname: User Number %d\n    email: user%d@example.org\n", i, i, i)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if stats, err := Check(bytes.NewReader(data), "bench.yaml", Options{}); err != nil || stats.Users != n {
			b.Fatal(stats, err)
		}
	}
}
