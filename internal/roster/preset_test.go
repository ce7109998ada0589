package roster

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// imported is what an operator checks of an imported user.
type imported struct {
	line                                   int
	localpart, original, displayName, mail string
}

func readExport(t *testing.T, name, columns string) []imported {
	t.Helper()
	m, err := ParseColumns(columns)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "samples", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	users, stats, err := ReadAll(strings.NewReader(string(data)), path, Options{Columns: m})
	if err != nil {
		t.Fatalf("%s with --columns %s:\n%v", path, columns, err)
	}
	if stats.Users != len(users) {
		t.Errorf("stats say %d users, read %d", stats.Users, len(users))
	}
	var got []imported
	for _, u := range users {
		if u.Password != "" {
			t.Errorf("line %d: a preset took a password from the export", u.Line)
		}
		if u.Admin || u.UserType != "" {
			t.Errorf("line %d: admin=%v user_type=%q from an export", u.Line, u.Admin, u.UserType)
		}
		got = append(got, imported{u.Line, u.Localpart, u.Original, u.DisplayName, u.Email})
	}
	return got
}

func compareImported(t *testing.T, got, want []imported) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d users, want %d:\n%v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("user %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestPresetGoogleSample(t *testing.T) {
	t.Parallel()
	compareImported(t, readExport(t, "google-export.csv", "google"), []imported{
		{2, "jose.nunez", "", "José Núñez", "jose.nunez@example.org"},
		{3, "sean.obrien", "", "Seán O'Brien", "sean.obrien@example.org"},
		{4, "maria.garcia", "", "María García", "maria.garcia@example.org"},
		{5, "maria.garcia2", "", "María García", "maria.garcia2@example.org"},
		{6, "zoe.angstrom-lind", "", "Zoë Ångström-Lind", "zoe.angstrom-lind@example.org"},
		{7, "jean-luc.darcy", "Jean-Luc.DArcy", "Jean-Luc d'Arcy", "Jean-Luc.DArcy@example.org"},
		{8, "dara.oneill", "dara.o'neill", "Dara O’Neill", "dara.o'neill@example.org"},
		{9, "li.wei", "", "李 伟", "li.wei@example.org"},
		{10, "robert.smith", "", "Robert Smith, Jr.", "robert.smith@example.org"},
	})
}

func TestPresetEntraSample(t *testing.T) {
	t.Parallel()
	// Line 1 is "version:v1.0", line 2 the header. The bulk-create template has
	// no mail column, so no email is guessed from the UPN.
	compareImported(t, readExport(t, "entra-export.csv", "entra"), []imported{
		{3, "chloe.lefevre", "", "Chloé Lefèvre", ""},
		{4, "olafur.grimsson", "Olafur.Grimsson", "Ólafur Grímsson", ""},
		{5, "anna.schmidt", "", "Anna Schmidt", ""},
		{6, "a.schmidt", "", "Anna Schmidt", ""},
		{7, "renee.oconnor", "renee.o'connor", "Renée O'Connor", ""},
		{8, "lukasz.zolc", "", "Łukasz Żółć", ""},
		{9, "nguyen.minh.khai", "Nguyen.Minh.Khai", "Minh Khai Nguyễn", ""}, // no displayName: given name + surname
	})
}

func TestPresetOktaSample(t *testing.T) {
	t.Parallel()
	compareImported(t, readExport(t, "okta-export.csv", "okta"), []imported{
		{2, "renee.dubois", "Renée.Dubois", "Renée Dubois", "renee.dubois@example.org"},
		{3, "pat.omalley", "pat.o'malley", "Pat O'Malley", "pat.omalley@example.org"},
		{4, "sam.lee", "", "Sam Lee", "sam.lee@example.org"},
		{5, "samuel.lee", "", "Sam Lee", "samuel.lee@example.org"},
		{6, "soren.kierkegaard", "søren.kierkegaard", "Søren Kierkegaard", "soren.kierkegaard@example.org"},
		{7, "jdoe", "", "Jane Doe", "jane.doe@example.org"}, // a login that is not an address
		{8, "amara.okafor", "", "Dr. Amara Okafor", "amara.okafor@example.org"},
		{9, "hans.strasser", "", "Hans Straßer", "hans.strasser@example.org"},
	})
}

func TestDeriveLocalpart(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"alice@example.org", "alice"},
		{"Alice.Martin@Example.org", "alice.martin"},
		{"  bob@example.org ", "bob"},
		{"jdoe", "jdoe"},
		{"José.Núñez@example.org", "jose.nunez"},
		{"Zoë@example.org", "zoe"},
		{"Müller@example.org", "muller"}, // ü is u plus an accent, not ue
		{"straße@example.org", "strasse"},
		{"ÆSIR.ØRSTED@example.org", "aesir.orsted"},
		{"łukasz.żółć@example.org", "lukasz.zolc"},
		{"þóra@example.org", "thora"},
		{"İlkay@example.org", "ilkay"},
		{"o'brien@example.org", "obrien"},
		{"o’brien@example.org", "obrien"},
		{"\"quoted\"@example.org", "quoted"},
		{"jean paul@example.org", "jean-paul"},
		{"a & b@example.org", "a-b"},
		{"x!#$%y@example.org", "x-y"},
		{"alice+matrix@example.org", "alice+matrix"},
		{"first_last=1/2@example.org", "first_last=1/2"},
		{"_bot@example.org", "bot"},
		{".dots.@example.org", "dots"},
		{"user@sub@example.org", "user-sub"}, // the part before the last @
		{"ﬁona@example.org", "fiona"},        // a ligature, by NFKD
		{"ｔｏｍ@example.org", "tom"},           // fullwidth letters, by NFKD
		{"иван@example.org", ""},
		{"@example.org", ""},
		{"", ""},
		{"12345@example.org", "12345"}, // derived, then refused by the localpart rules
	}
	for _, tc := range tests {
		if got := DeriveLocalpart(tc.in); got != tc.want {
			t.Errorf("DeriveLocalpart(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// Deriving is idempotent: a derived localpart derives to itself.
		if got := DeriveLocalpart(tc.want); got != tc.want {
			t.Errorf("DeriveLocalpart(%q) = %q: not idempotent", tc.want, got)
		}
	}
}

func FuzzDeriveLocalpart(f *testing.F) {
	for _, s := range []string{"José.Núñez@example.org", "o'brien", "иван", "a & b", "ǅemal", "ß"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lp := DeriveLocalpart(s)
		if lp == "" {
			return
		}
		if _, msg, _ := checkLocalpart(lp, ""); msg != "" && !strings.Contains(msg, "all digits") && !strings.Contains(msg, "too long") {
			t.Fatalf("DeriveLocalpart(%q) = %q: %s", s, lp, msg)
		}
		if again := DeriveLocalpart(lp); again != lp {
			t.Fatalf("DeriveLocalpart(%q) = %q, then %q", s, lp, again)
		}
	})
}

func TestParseColumns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec, want, err string
	}{
		{spec: "", want: ""},
		{spec: "google", want: "google"},
		{spec: "Google", want: "google"},
		{spec: "gsuite", want: "google"},
		{spec: "azure", want: "entra"},
		{spec: "okta", want: "okta"},
		{spec: "localpart=uid", want: "localpart=uid"},
		{spec: "localpart=uid,displayname=cn,email=mail", want: "localpart=uid,displayname=cn,email=mail"},
		{spec: " username = UID , display_name = givenName + sn ", want: "localpart=uid,displayname=givenname+sn"},
		{spec: "localpart=mail,displayname=displayName|givenName+sn,admin=isAdmin", want: "localpart=mail,displayname=displayname|givenname+sn,admin=isadmin"},
		{spec: "onelogin", err: "no such preset"},
		{spec: "displayname=cn", err: "no localpart"},
		{spec: "localpart=uid,emial=mail", err: `did you mean "email"?`},
		{spec: "localpart=uid,localpart=mail", err: "mapped twice"},
		{spec: "localpart=uid,username=mail", err: "mapped twice"},
		{spec: "localpart=", err: "is not COLUMN=EXPORT-COLUMN"},
		{spec: "localpart=uid,,email=mail", err: "is not COLUMN=EXPORT-COLUMN"},
		{spec: "localpart=uid,displayname=cn+", err: "empty column"},
	}
	for _, tc := range tests {
		m, err := ParseColumns(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseColumns(%q) error = %v, want one containing %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseColumns(%q): %v", tc.spec, err)
			continue
		}
		if got := m.String(); got != tc.want {
			t.Errorf("ParseColumns(%q) = %q, want %q", tc.spec, got, tc.want)
		}
		if tc.spec == "" && m != nil {
			t.Errorf("ParseColumns(\"\") = %v, want nil", m)
		}
	}
}

func TestHeaderKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cell string
		want []string
	}{
		{"login", []string{"login"}},
		{"First Name [Required]", []string{"first name [required]", "required", "first name"}},
		{"Name [displayName] Required", []string{"name [displayname] required", "displayname", "name"}},
		{"Recovery Phone [MUST BE IN THE E.164 FORMAT]", []string{"recovery phone [must be in the e.164 format]", "must be in the e.164 format", "recovery phone"}},
		{"odd [", []string{"odd ["}},
	}
	for _, tc := range tests {
		if got := headerKeys(tc.cell); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("headerKeys(%q) = %q, want %q", tc.cell, got, tc.want)
		}
	}
}

func mustColumns(t *testing.T, spec string) *Mapping {
	t.Helper()
	m, err := ParseColumns(spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPresetProblems(t *testing.T) {
	t.Parallel()
	const google = "First Name [Required],Last Name [Required],Email Address [Required]\n"
	const okta = "login,firstName,lastName,email\n"
	tests := []badCase{
		{name: "two people, one localpart", input: google +
			"José,Núñez,jose.nunez@example.org\n" +
			"Ana,Silva,ana.silva@example.org\n" +
			"Jose,Nunez,Jose.Nunez@branch.example.net\n",
			opts: Options{Columns: mustColumns(t, "google")},
			want: []want{{4, 12, `two people get the localpart "jose.nunez": line 2 and line 4 (from "Jose.Nunez")`, `add a column named "localpart"`}}},
		{name: "no address", input: google + "Ana,Silva,\n",
			opts: Options{Columns: mustColumns(t, "google")},
			want: []want{{2, 11, "no email address for this user", "fill it in"}}},
		{name: "no latin letters", input: okta + "иван@example.org,Иван,Петров,ivan@example.org\n",
			opts: Options{Columns: mustColumns(t, "okta")},
			want: []want{{2, 1, `cannot make a localpart from "иван@example.org"`, `column named "localpart"`}}},
		{name: "all digits", input: okta + "12345@example.org,A,B,a@example.org\n",
			opts: Options{Columns: mustColumns(t, "okta")},
			want: []want{{2, 1, `"12345" is all digits`, "add a letter"}}},
		{name: "wrong preset", input: okta + "a@example.org,A,B,a@example.org\n",
			opts: Options{Columns: mustColumns(t, "google")},
			want: []want{{1, 1, `the header has no column "email address"`, "this looks like an Okta export: use --columns okta"}}},
		{name: "own roster with --columns", input: "localpart,displayname\nalice,Alice\n",
			opts: Options{Columns: mustColumns(t, "entra")},
			want: []want{{1, 1, `no column "userprincipalname"`, "leave out --columns"}}},
		{name: "explicit mapping, missing column", input: "uid,cn\nalice,Alice\n",
			opts: Options{Columns: mustColumns(t, "localpart=uid,displayname=cn,email=mail")},
			want: []want{{1, 1, `the header has no column "mail"`, "mapping given with --columns"}}},
		{name: "explicit mapping, values validated", input: "uid,cn,isAdmin\nalice,Alice,maybe\n",
			opts: Options{Columns: mustColumns(t, "localpart=uid,displayname=cn,admin=isAdmin")},
			want: []want{{2, 13, `admin must be true or false, not "maybe"`, "true or false"}}},
		{name: "override column is checked, not derived", input: "localpart," + google + "Bad Name,Ana,Silva,ana@example.org\n",
			opts: Options{Columns: mustColumns(t, "google")},
			want: []want{{2, 1, `"Bad Name" is not a valid localpart: space at position 4`, "a-z"}}},
		{name: "google export without --columns", input: google + "Ana,Silva,ana@example.org\n",
			want: []want{{1, 1, "this is a Google Workspace export", "--columns google"}}},
		{name: "entra file without --columns", input: "version:v1.0\nName [displayName] Required,User name [userPrincipalName] Required\nAna,ana@example.org\n",
			want: []want{{1, 1, "this is a Microsoft Entra ID (Azure AD) export", "--columns entra"}}},
		{name: "okta export without --columns", input: okta + "ana@example.org,Ana,Silva,ana@example.org\n",
			want: []want{{1, 1, "this is an Okta export", "--columns okta"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.format = FormatCSV
			checkProblems(t, tc)
		})
	}
}

func TestPresetOverrideSolvesCollision(t *testing.T) {
	t.Parallel()
	in := "First Name [Required],Last Name [Required],Email Address [Required],localpart\n" +
		"José,Núñez,jose.nunez@example.org,\n" +
		"Jose,Nunez,Jose.Nunez@branch.example.net,jose.nunez.branch\n"
	users, _, err := ReadAll(strings.NewReader(in), "x.csv", Options{Columns: mustColumns(t, "google")})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Localpart != "jose.nunez" || users[1].Localpart != "jose.nunez.branch" {
		t.Fatalf("got %+v", users)
	}
}

func TestExplicitMapping(t *testing.T) {
	t.Parallel()
	in := "dn,uid,givenName,sn,cn,mail,memberOf\n" +
		"\"uid=ana,ou=people\",Ana.Silva,Ana,Silva,,ana@example.org,admins\n" +
		"\"uid=bo,ou=people\",bo,Bo,Ek,Bo Ek (Ops),bo@example.org,\n"
	m := mustColumns(t, "localpart=uid,displayname=cn|givenName+sn,email=mail")
	users, _, err := ReadAll(strings.NewReader(in), "ldap.csv", Options{Columns: m})
	if err != nil {
		t.Fatal(err)
	}
	got := []imported{}
	for _, u := range users {
		got = append(got, imported{u.Line, u.Localpart, u.Original, u.DisplayName, u.Email})
	}
	compareImported(t, got, []imported{
		{2, "ana.silva", "Ana.Silva", "Ana Silva", "ana@example.org"},
		{3, "bo", "", "Bo Ek (Ops)", "bo@example.org"},
	})
}

func TestColumnsRefuseYAML(t *testing.T) {
	t.Parallel()
	_, err := Check(strings.NewReader("- localpart: a\n"), "r.yaml", Options{Columns: mustColumns(t, "okta")})
	if err == nil || !strings.Contains(err.Error(), "--columns reads CSV exports") {
		t.Fatalf("got %v", err)
	}
}

// FuzzColumns reads arbitrary CSV through the presets and an explicit mapping:
// no panic, every problem placed and printable, Check and Each agree, and every
// user yielded has a valid localpart.
func FuzzColumns(f *testing.F) {
	for _, name := range []string{"google-export.csv", "entra-export.csv", "okta-export.csv"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "samples", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("version:v1.0\nName [displayName] Required,User name [userPrincipalName] Required\n,\n"))
	f.Add([]byte("uid,cn,mail,localpart\nиван,x,y,\n__,a,b,_c\n"))
	mappings := []*Mapping{presets["google"], presets["entra"], presets["okta"],
		{fields: [numColumns][]source{colLocalpart: {{"uid"}, {"mail"}}, colDisplayName: {{"cn"}, {"givenname", "sn"}}, colAdmin: {{"admin"}}}, required: []string{"uid"}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		// One mapping per input, chosen by its length, keeps each run to two passes.
		for _, m := range mappings[len(data)%len(mappings):][:1] {
			opts := Options{Format: FormatCSV, ServerName: "example.org", Columns: m}
			stats, checkErr := Check(bytes.NewReader(data), "fuzz", opts)
			problemsOf(t, "Check", checkErr)
			var users []User
			eachErr := Each(bytes.NewReader(data), "fuzz", opts, func(u User) error {
				users = append(users, u)
				return nil
			})
			problemsOf(t, "Each", eachErr)
			if (checkErr == nil) != (eachErr == nil) {
				t.Fatalf("%s: Check returned %v but Each returned %v", m, checkErr, eachErr)
			}
			if checkErr != nil {
				continue
			}
			if len(users) != stats.Users {
				t.Fatalf("%s: Each yielded %d users, Check counted %d", m, len(users), stats.Users)
			}
			for _, u := range users {
				if _, msg, _ := checkLocalpart(u.Localpart, opts.ServerName); msg != "" {
					t.Fatalf("%s: invalid user %+v: %s", m, u, msg)
				}
			}
		}
	})
}
