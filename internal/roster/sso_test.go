package roster

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// ssoUser is what a test checks of a user's SSO binding.
type ssoUser struct {
	localpart, provider, subject string
}

func ssoUsers(users []User) []ssoUser {
	var out []ssoUser
	for _, u := range users {
		out = append(out, ssoUser{u.Localpart, u.SSOProvider, u.SSOSubject})
	}
	return out
}

func TestSSOGood(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		format Format
		opts   Options
		input  string
		want   []ssoUser
	}{
		{name: "both columns", format: FormatCSV,
			input: "localpart,sso_provider,sso_subject\nalice,oidc-okta,00uA\nbob,,\n",
			want:  []ssoUser{{"alice", "oidc-okta", "00uA"}, {"bob", "", ""}}},
		{name: "trimmed as Synapse trims the subject", format: FormatCSV,
			input: "localpart,sso_provider,sso_subject\nalice, saml ,  user@idp.example  \n",
			want:  []ssoUser{{"alice", "saml", "user@idp.example"}}},
		{name: "provider from the option", format: FormatCSV, opts: Options{SSOProvider: " oidc "},
			input: "localpart,sso_subject\nalice,s-1\nbob,\n",
			want:  []ssoUser{{"alice", "oidc", "s-1"}, {"bob", "", ""}}},
		{name: "the column wins over the option", format: FormatCSV, opts: Options{SSOProvider: "oidc"},
			input: "localpart,sso_provider,sso_subject\nalice,cas,s-1\nbob,,s-1\n",
			want:  []ssoUser{{"alice", "cas", "s-1"}, {"bob", "oidc", "s-1"}}},
		{name: "one subject at two providers", format: FormatCSV,
			input: "localpart,sso_provider,sso_subject\nalice,oidc-a,s\nbob,oidc-b,s\n",
			want:  []ssoUser{{"alice", "oidc-a", "s"}, {"bob", "oidc-b", "s"}}},
		{name: "subjects differ in case, as Synapse compares them", format: FormatCSV,
			input: "localpart,sso_provider,sso_subject\nalice,oidc,00uX\nbob,oidc,00ux\n",
			want:  []ssoUser{{"alice", "oidc", "00uX"}, {"bob", "oidc", "00ux"}}},
		{name: "MAS names a provider by its human name or ULID", format: FormatCSV,
			input: "localpart,sso_provider,sso_subject\nalice,Corporate SSO,s-1\nbob,01H8PKNWKKRPCBW4YGH1RWV279,s-2\n",
			want:  []ssoUser{{"alice", "Corporate SSO", "s-1"}, {"bob", "01H8PKNWKKRPCBW4YGH1RWV279", "s-2"}}},
		{name: "any idp_id character", format: FormatCSV,
			input: "localpart,sso_provider,sso_subject\nalice,oidc-Key.cloak_1~x-y,s\n",
			want:  []ssoUser{{"alice", "oidc-Key.cloak_1~x-y", "s"}}},
		{name: "an empty password is no password", format: FormatCSV,
			input: "localpart,password,sso_provider,sso_subject\nalice,,oidc,s\n",
			want:  []ssoUser{{"alice", "oidc", "s"}}},
		{name: "yaml", format: FormatYAML, opts: Options{SSOProvider: "oidc-okta"},
			input: "- {localpart: alice, sso_provider: saml, sso_subject: alice@idp}\n- {localpart: bob, sso_subject: 00uB}\n- {localpart: carol}\n",
			want:  []ssoUser{{"alice", "saml", "alice@idp"}, {"bob", "oidc-okta", "00uB"}, {"carol", "", ""}}},
		{name: "yaml null subject", format: FormatYAML,
			input: "- {localpart: alice, sso_provider: , sso_subject: ~}\n",
			want:  []ssoUser{{"alice", "", ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := tc.opts
			opts.Format = tc.format
			users, _, err := ReadAll(strings.NewReader(tc.input), "roster", opts)
			if err != nil {
				t.Fatal(err)
			}
			got := ssoUsers(users)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("user %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestSSOProblems(t *testing.T) {
	t.Parallel()
	const h = "localpart,password,sso_provider,sso_subject\n"
	tests := []badCase{
		{name: "provider without subject", format: FormatCSV, input: h + "alice,,oidc,\n",
			want: []want{{2, 8, `SSO provider "oidc" is given without an sso_subject`, "both or neither"}}},
		{name: "subject without provider", format: FormatCSV, input: h + "alice,,,00uA\n",
			want: []want{{2, 9, `SSO subject "00uA" has no provider`, "--sso-provider"}}},
		{name: "password and SSO", format: FormatCSV, input: h + "alice,hunter2-secret,oidc,s\n",
			want: []want{{2, 7, "gets no password", "empty the password"}}},
		{name: "password and SSO from the option", format: FormatCSV, opts: Options{SSOProvider: "oidc"},
			input: "localpart,sso_subject,password\nalice,s,pw-pw-pw-pw\n",
			want:  []want{{2, 9, "gets no password", "empty the password"}}},
		{name: "duplicate identity", format: FormatCSV, input: h + "alice,,oidc,s\nbob,,oidc,t\ncarol,,oidc,s\n",
			want: []want{{4, 13, `duplicate SSO identity: subject "s" at provider "oidc" is already on line 2`, "409"}}},
		{name: "duplicate through the option", format: FormatCSV, opts: Options{SSOProvider: "oidc"},
			input: h + "alice,,oidc,s\ncarol,,,s\n",
			want:  []want{{3, 9, "already on line 2", "correct the subject"}}},
		{name: "control character in the subject", format: FormatCSV, input: h + "alice,,oidc,\"a\tb\"\n",
			want: []want{{2, 13, "SSO subject has a tab at position 2", "on one line"}}},
		{name: "zero-width space in the provider", format: FormatCSV, input: h + "alice,,oidc\u200b,s\n",
			want: []want{{2, 8, "invisible character U+200B at position 5", "invisible"}}},
		{name: "no-break space in the subject", format: FormatCSV, input: h + "alice,,oidc,a\u00a0b\n",
			want: []want{{2, 13, "invisible character U+00A0", "copy it exactly"}}},
		{name: "subject too long", format: FormatCSV, input: h + "alice,,oidc," + strings.Repeat("x", 256) + "\n",
			want: []want{{2, 13, "SSO subject is 256 bytes long", "at most 255"}}},
		{name: "provider too long", format: FormatCSV, input: h + "alice,,M" + strings.Repeat("x", 255) + ",s\n",
			want: []want{{2, 8, "SSO provider is 256 bytes long", "MSC2858"}}},
		{name: "bad idp_id", format: FormatCSV, input: h + "alice,,oidc-my okta,s\n",
			want: []want{{2, 8, `"oidc-my okta" is not a Synapse OIDC provider ID: space at position 8`, "A-Z, a-z, 0-9 and . _ ~ -"}}},
		{name: "idp_id too long", format: FormatCSV, input: h + "alice,,oidc-" + strings.Repeat("x", 251) + ",s\n",
			want: []want{{2, 8, "SSO provider is 256 bytes long", "at most 255"}}},
		{name: "empty idp_id", format: FormatCSV, input: h + "alice,,oidc-,s\n",
			want: []want{{2, 8, "no idp_id after the dash", "oidc_providers"}}},
		{name: "capitals", format: FormatCSV, input: h + "alice,,OIDC-okta,s\nbob,,SAML,t\n",
			want: []want{
				{2, 8, `"OIDC-okta" is not written as Synapse writes it`, `write "oidc-okta"`},
				{3, 6, `"SAML" is not written`, `write "saml"`},
			}},
		{name: "--sso-provider without a subject column", format: FormatCSV, opts: Options{SSOProvider: "oidc"},
			input: "localpart\nalice\n",
			want:  []want{{1, 1, "no sso_subject column", "leave out --sso-provider"}}},
		{name: "yaml: subject without provider", format: FormatYAML,
			input: "- localpart: alice\n  sso_subject: 00uA\n",
			want:  []want{{2, 16, "has no provider", "--sso-provider"}}},
		{name: "yaml: duplicate", format: FormatYAML,
			input: "- {localpart: a, sso_provider: cas, sso_subject: x}\n- {localpart: b, sso_provider: cas, sso_subject: x}\n",
			want:  []want{{2, 50, "already on line 1", "remove one"}}},
		{name: "yaml: list as subject", format: FormatYAML,
			input: "- {localpart: a, sso_provider: cas, sso_subject: [x]}\n",
			want:  []want{{1, 50, "sso_subject must be a single value", "one line"}}},
		{name: "yaml: password", format: FormatYAML,
			input: "- {localpart: a, password: pw-pw-pw-pw, sso_provider: cas, sso_subject: x}\n",
			want:  []want{{1, 28, "gets no password", "empty sso_subject"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkProblems(t, tc)
		})
	}
}

// A password never shows in the problem that says an SSO user has one.
func TestSSOPasswordStaysOut(t *testing.T) {
	t.Parallel()
	_, err := Check(strings.NewReader("localpart,password,sso_provider,sso_subject\nalice,Tr0ub4dor&3,oidc,s\n"), "r.csv", Options{})
	if err == nil || strings.Contains(err.Error(), "Tr0ub4dor") {
		t.Fatalf("Check = %v", err)
	}
}

func TestSSOProviderOption(t *testing.T) {
	t.Parallel()
	for provider, bad := range map[string]string{
		"oidc": "", "oidc-okta": "", "saml": "", "cas": "", "Okta (MAS)": "", "01H8PKNWKKRPCBW4YGH1RWV279": "",
		"oidc-my okta": "not a Synapse OIDC provider ID", "Oidc-okta": "not written as Synapse writes it",
		"oidc\x00": "control character", strings.Repeat("p", 256): "256 bytes",
		"provision": "the marker provision puts", "Provision": "not an identity provider",
	} {
		_, err := newRun("r.csv", Options{SSOProvider: provider})
		_, rerr := NewRecords(Options{SSOProvider: provider}, nil)
		for _, err := range []error{err, rerr} {
			switch {
			case bad == "" && err != nil:
				t.Errorf("--sso-provider %q: %v", provider, err)
			case bad != "" && (err == nil || !strings.Contains(err.Error(), bad) || !strings.HasPrefix(err.Error(), "--sso-provider: ")):
				t.Errorf("--sso-provider %q: %v; want an error containing %q", provider, err, bad)
			}
		}
	}
}

// Exports with a subject: the presets read it only for --sso-provider.
func TestSSOPresets(t *testing.T) {
	t.Parallel()
	entra := "userPrincipalName,displayName,surname,mail,givenName,objectId,userType\n" +
		"chloe.lefevre@example.org,Chloé Lefèvre,Lefèvre,chloe.lefevre@example.org,Chloé,6f1c2b9e-4d3a-4b8e-9c71-0d2e5a7b8c90,Member\n" +
		"anna@example.org,Anna,,,,,Member\n"
	entraID := "id,userPrincipalName,displayName\n6f1c2b9e-4d3a-4b8e-9c71-0d2e5a7b8c90,chloe@example.org,Chloé\n"
	entraPortal := "Object ID,User principal name [userPrincipalName],Display name [displayName]\nd1,chloe@example.org,Chloé\n"
	okta := "id,login,firstName,lastName,email\n00u1a2b3c4d5e6f7g8h9,sam.lee@example.org,Sam,Lee,sam.lee@example.org\n"
	tests := []struct {
		name, columns, input, provider string
		want                           []ssoUser
	}{
		{"entra objectId", "entra", entra, "oidc-entra", []ssoUser{
			{"chloe.lefevre", "oidc-entra", "6f1c2b9e-4d3a-4b8e-9c71-0d2e5a7b8c90"},
			{"anna", "", ""}, // no object ID: a password account
		}},
		{"entra without --sso-provider", "entra", entra, "", []ssoUser{{"chloe.lefevre", "", ""}, {"anna", "", ""}}},
		{"entra id", "entra", entraID, "oidc", []ssoUser{{"chloe", "oidc", "6f1c2b9e-4d3a-4b8e-9c71-0d2e5a7b8c90"}}},
		{"entra Object ID", "entra", entraPortal, "oidc", []ssoUser{{"chloe", "oidc", "d1"}}},
		{"okta id", "okta", okta, "oidc-okta", []ssoUser{{"sam.lee", "oidc-okta", "00u1a2b3c4d5e6f7g8h9"}}},
		{"okta without --sso-provider", "okta", okta, "", []ssoUser{{"sam.lee", "", ""}}},
		{"explicit mapping", "localpart=mail,sso_subject=employee id", "mail,Employee ID\na@example.org,e-1\n", "oidc-corp",
			[]ssoUser{{"a", "oidc-corp", "e-1"}}},
		{"explicit mapping with a provider column", "localpart=mail,sso_subject=sub,sso_provider=idp", "mail,sub,idp\na@example.org,e-1,saml\n", "",
			[]ssoUser{{"a", "saml", "e-1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, err := ParseColumns(tc.columns)
			if err != nil {
				t.Fatal(err)
			}
			users, _, err := ReadAll(strings.NewReader(tc.input), "export.csv", Options{Columns: m, SSOProvider: tc.provider})
			if err != nil {
				t.Fatal(err)
			}
			got := ssoUsers(users)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("user %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// With --sso-provider, an export without subjects is one problem at its
// header, not a roster of password accounts nobody asked for.
func TestSSOPresetsWithoutSubject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ sample, columns, msg, hint string }{
		{"google-export.csv", "google", "Google Workspace export holds no SSO subject", "sso_subject=COLUMN"},
		{"entra-export.csv", "entra", `no column "objectid" or "object id" or "id"`, "Download users"},
		{"okta-export.csv", "okta", `no column "id" or "user id"`, "00u"},
	} {
		m, err := ParseColumns(tc.columns)
		if err != nil {
			t.Fatal(err)
		}
		data := readSample(t, "../../samples/"+tc.sample)
		_, err = Check(bytes.NewReader(data), tc.sample, Options{Columns: m, SSOProvider: "oidc"})
		errs, ok := errors.AsType[*Errors](err)
		if !ok || errs.Total != 1 {
			t.Errorf("%s: %v; want one problem", tc.sample, err)
			continue
		}
		p := errs.Problems[0]
		if p.Column != 1 || !strings.Contains(p.Message, tc.msg) || !strings.Contains(p.Hint, tc.hint) || !strings.HasPrefix(p.Message, "--sso-provider is given") {
			t.Errorf("%s: %s; want %q and %q", tc.sample, p, tc.msg, tc.hint)
		}
	}
}

// Records (a directory) take the SSO columns, with the option's provider,
// and name the earlier record of a duplicate identity.
func TestSSORecords(t *testing.T) {
	t.Parallel()
	rs, err := NewRecords(Options{SSOProvider: "oidc-corp"}, func(seq int) string { return "at entry " + string(rune('0'+seq)) })
	if err != nil {
		t.Fatal(err)
	}
	u, ok := rs.Add(Record{Location: "uid=a", Fields: []Field{
		{Column: "localpart", Source: "uid", Value: "a"},
		{Column: "sso_subject", Source: "entryUUID", Value: "u-1"},
	}})
	if !ok || u.SSOProvider != "oidc-corp" || u.SSOSubject != "u-1" {
		t.Fatalf("Add = %+v, %v", u, ok)
	}
	if u, ok := rs.Add(Record{Location: "uid=b", Fields: []Field{
		{Column: "localpart", Source: "uid", Value: "b"},
		{Column: "sso_provider", Source: "idp", Value: "saml"},
		{Column: "sso_subject", Source: "entryUUID", Value: "u-1"},
	}}); !ok || u.SSOProvider != "saml" {
		t.Fatalf("Add = %+v, %v", u, ok)
	}
	if _, ok := rs.Add(Record{Location: "uid=c", Fields: []Field{
		{Column: "localpart", Source: "uid", Value: "c"},
		{Column: "sso_subject", Source: "entryUUID", Value: "u-1"},
	}}); ok {
		t.Fatal("a duplicate identity was accepted")
	}
	if _, ok := rs.Add(Record{Location: "uid=d", Fields: []Field{
		{Column: "localpart", Source: "uid", Value: "d"},
		{Column: "sso_subject", Source: "objectGUID", Value: "\xff\xfe"},
	}}); ok {
		t.Fatal("binary data was accepted as a subject")
	}
	want := []string{
		`uid=c: entryUUID: duplicate SSO identity: subject "u-1" at provider "oidc-corp" is already at entry 1`,
		`uid=d: objectGUID: the SSO subject has a invalid UTF-8 at position 1`,
	}
	errs, _ := errors.AsType[*Errors](rs.Err())
	if errs == nil || len(errs.Problems) != len(want) {
		t.Fatalf("Err = %v", rs.Err())
	}
	for i, w := range want {
		if got := errs.Problems[i].String(); !strings.HasPrefix(got, w) {
			t.Errorf("problem %d = %s\nwant %s", i+1, got, w)
		}
	}
}

func TestSSOSample(t *testing.T) {
	t.Parallel()
	const file = "../../samples/sso.csv"
	users, stats, err := ReadAll(bytes.NewReader(readSample(t, file)), file, Options{ServerName: "example.org", SSOProvider: "oidc-okta"})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Users != 5 {
		t.Errorf("%d users, want 5", stats.Users)
	}
	want := []ssoUser{
		{"alice", "oidc-okta", "00u1a2b3c4d5e6f7g8h9"},
		{"bob", "oidc-okta", "00u1a2b3c4d5e6f7g8i0"},
		{"chloe", "oidc-entra", "6f1c2b9e-4d3a-4b8e-9c71-0d2e5a7b8c90"},
		{"dmitri", "", ""},
		{"eva", "oidc-okta", "00u1a2b3c4d5e6f7g8j1"},
	}
	got := ssoUsers(users)
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("got %v\nwant %v", got, want)
		}
	}
	// Without --sso-provider, eva's subject has no provider.
	_, err = Check(bytes.NewReader(readSample(t, file)), file, Options{})
	if errs, ok := errors.AsType[*Errors](err); !ok || errs.Total != 1 || errs.Problems[0].Line != 6 {
		t.Errorf("without --sso-provider: %v; want one problem on line 6", err)
	}
}
