package roster

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Single sign-on bindings: the sso_provider and sso_subject columns.
//
// The provider is named as the homeserver names it, and there are two:
//
//   - Synapse's auth_provider, the idp_id of the provider in its config:
//     "oidc" (the legacy single provider), "oidc-<idp_id>" where idp_id
//     matches ^[A-Za-z0-9._~-]+$ and has at most 250 characters
//     (OIDC_PROVIDER_CONFIG_SCHEMA in synapse/config/oidc.py, which then
//     adds the "oidc-" prefix), "saml" (synapse/handlers/saml.py), "cas"
//     (synapse/handlers/cas.py), or whatever idp_id an SSO module gives.
//   - MAS's upstream OAuth provider, named by its ULID or by its human name,
//     which is free text ("Okta", "Corporate SSO").
//
// So the rule is deliberately loose: printable text of at most 255 bytes
// (MSC2858's limit on an IdP ID, and Synapse's 250 for an idp_id plus
// "oidc-"). Only what cannot be meant is refused: a value that starts with
// "oidc-" is a Synapse OIDC idp_id and must follow Synapse's pattern;
// "oidc", "saml" and "cas" must be lowercase, since Synapse writes them so;
// and "provision" is provision's own marker. A provider ID that matches no
// configured provider is not caught here (Synapse records external IDs
// without checking them against its providers, see
// _record_user_external_id_txn in
// synapse/storage/databases/main/registration.py): the person would then
// get a new, empty account at the first SSO login. The docs say to copy the
// ID from the homeserver's config.

// markerProvider is the auth_provider of the external ID by which provision
// marks the accounts it creates (docs/sync.md): no SSO login resolves to
// it, and a binding under that name would be taken for the marker.
const markerProvider = "provision"

// maxSSOProvider is MSC2858's limit on an identity provider's ID. Synapse
// allows 250 characters for an OIDC idp_id so that "oidc-" fits in it: the
// same limit, so no other is needed for "oidc-..." providers.
const maxSSOProvider = 255

// maxSSOSubject bounds a subject. Synapse keeps external_id in a text
// column with no limit of its own, but OpenID Connect Core 1.0 §2 says a
// sub claim "MUST NOT exceed 255 ASCII characters", and the IDs the
// presets read are far shorter (a GUID, Okta's 20-character user id): a
// longer value is a wrong cell (a token, a certificate), not a subject.
const maxSSOSubject = 255

const providerHint = `write the provider as the homeserver names it: on Synapse its idp_id ("oidc", "oidc-<idp_id>" as in oidc_providers, "saml" or "cas"); with MAS the upstream provider's ID or name`

// checkSSOProvider checks a trimmed provider; msg is "" when it is valid.
func checkSSOProvider(s string) (msg, hint string) {
	if c, pos, ok := firstUnprintable(s); ok {
		return fmt.Sprintf("the SSO provider %s has a %s at position %d", quoteShort(s), describe(c), pos), providerHint
	}
	if len(s) > maxSSOProvider {
		return fmt.Sprintf("the SSO provider is %d bytes long", len(s)),
			fmt.Sprintf("an identity provider's ID has at most %d bytes (MSC2858): %s", maxSSOProvider, providerHint)
	}
	lower := strings.ToLower(s)
	switch {
	case lower == markerProvider:
		return fmt.Sprintf("%s is not an identity provider: it names the marker provision puts on the accounts it creates", quoteShort(s)),
			"write the provider people sign in with (docs/sync.md, \"provision's marker\")"
	case (lower == "oidc" || lower == "saml" || lower == "cas") && s != lower,
		strings.HasPrefix(lower, "oidc-") && !strings.HasPrefix(s, "oidc-"):
		return fmt.Sprintf("the SSO provider %s is not written as Synapse writes it", quoteShort(s)),
			fmt.Sprintf("Synapse's provider IDs start in lowercase: write %s", quoteShort(lowerPrefix(s)))
	case strings.HasPrefix(s, "oidc-"):
		id := s[len("oidc-"):]
		if id == "" {
			return `the SSO provider "oidc-" has no idp_id after the dash`, `write "oidc-" followed by the provider's idp_id from oidc_providers, or "oidc" for the legacy oidc_config`
		}
		for i, c := range id {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-') {
				return fmt.Sprintf("%s is not a Synapse OIDC provider ID: %s at position %d", quoteShort(s), describe(c), len("oidc-")+utf8.RuneCountInString(id[:i])+1),
					"Synapse's idp_id uses only A-Z, a-z, 0-9 and . _ ~ - (synapse/config/oidc.py): copy it from oidc_providers in homeserver.yaml, with oidc- in front"
			}
		}
	}
	return "", ""
}

// lowerPrefix lowercases the "oidc", "saml" or "cas" a provider starts with.
func lowerPrefix(s string) string {
	for _, p := range []string{"oidc-", "oidc", "saml", "cas"} {
		if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
			return p + s[len(p):]
		}
	}
	return s
}

// firstUnprintable finds the first character that is not printable text:
// controls, invalid UTF-8, and the invisible ones (no-break and zero-width
// spaces, format characters) that a copy from a web console brings along.
// An ordinary space is printable.
func firstUnprintable(s string) (c rune, pos int, ok bool) {
	pos = 1
	for _, c := range s {
		if c == utf8.RuneError || !unicode.IsPrint(c) {
			return c, pos, true
		}
		pos++
	}
	return 0, 0, false
}

// sso validates an entry's SSO binding: both columns or neither, a subject
// without a provider only when --sso-provider gives one, no password, and
// no two people with one identity.
func (r *run) sso(e *entry, u *User) {
	pv, sv := e.fields[colSSOProvider], e.fields[colSSOSubject]
	provider, pok := r.ssoValue(pv, "SSO provider")
	subject, sok := r.ssoValue(sv, "SSO subject")
	if !pok || !sok {
		return
	}
	if provider != "" {
		if msg, hint := checkSSOProvider(provider); msg != "" {
			r.bad(pv, msg, hint)
			return
		}
	}
	switch {
	case subject == "" && provider == "":
		return
	case subject == "":
		r.bad(pv, fmt.Sprintf("the SSO provider %s is given without an sso_subject", quoteShort(provider)),
			"add the person's ID at the provider in sso_subject (both or neither), or empty sso_provider for a password account")
		return
	case len(subject) > maxSSOSubject:
		r.bad(sv, fmt.Sprintf("the SSO subject is %d bytes long", len(subject)),
			fmt.Sprintf("a subject (OpenID Connect's sub) has at most %d characters: is this the right column?", maxSSOSubject))
		return
	case provider == "" && r.opts.SSOProvider == "":
		r.bad(sv, fmt.Sprintf("the SSO subject %s has no provider", quoteShort(subject)),
			"give the provider for everyone with --sso-provider ID (on Synapse its idp_id, e.g. oidc-okta), or fill in sso_provider for this user")
		return
	case provider == "":
		provider = r.opts.SSOProvider
	}
	if pw := e.fields[colPassword]; pw.text != "" && !r.reported(pw) {
		// The password is not quoted: it must never appear in a message.
		r.bad(pw, "this user signs in with single sign-on and gets no password, but the password column has one",
			"empty the password, or empty sso_subject to make a password account")
		return
	}
	// Synapse compares external IDs exactly (a text column, UNIQUE
	// (auth_provider, external_id)), and so does this.
	if first, dup := r.seenSSO.add(provider+"\x00"+subject, e.line); dup {
		r.bad(sv, fmt.Sprintf("duplicate SSO identity: subject %s at provider %s is already %s", quoteShort(subject), quoteShort(provider), r.at(first)),
			`one identity can sign in to one account only (Synapse refuses the second with 409 "External id is already in use."): correct the subject, or remove one of the users`)
		return
	}
	u.SSOProvider, u.SSOSubject = provider, subject
}

// ssoValue reads one of the SSO columns, trimmed as Synapse trims the
// subject it renders from the claims (get_remote_user_id in
// synapse/handlers/oidc.py); ok is false when it has a problem.
func (r *run) ssoValue(v value, what string) (string, bool) {
	if r.reported(v) {
		return "", false
	}
	s := strings.TrimSpace(v.text)
	if c, pos, bad := firstUnprintable(s); bad {
		r.bad(v, fmt.Sprintf("the %s has a %s at position %d", what, describe(c), pos),
			"copy it exactly as the provider shows it, on one line, without invisible characters")
		return "", false
	}
	return s, true
}
