package roster

// The roster's columns: their names, and "did you mean" for an unknown one.

import (
	"fmt"
	"strings"

	"github.com/provision-matrix/provision/internal/suggest"
)

type column int

const (
	colLocalpart column = iota
	colDisplayName
	colEmail
	colAdmin
	colUserType
	colPassword
	colRooms
	colRecipient
	colSSOProvider
	colSSOSubject
	numColumns
)

// columnNames maps the CSV column names and YAML keys, lowercased, to columns.
var columnNames = map[string]column{
	"localpart":    colLocalpart,
	"username":     colLocalpart,
	"displayname":  colDisplayName,
	"display_name": colDisplayName,
	"email":        colEmail,
	"admin":        colAdmin,
	"user_type":    colUserType,
	"password":     colPassword,
	"rooms":        colRooms,
	"recipient":    colRecipient,
	"sso_provider": colSSOProvider,
	"sso_subject":  colSSOSubject,
}

const knownColumns = "localpart, displayname, email, admin, user_type, password, rooms, recipient, sso_provider, sso_subject"

// value is one value as written, with where it starts.
var synonyms = map[string]string{
	"user": "localpart", "login": "localpart", "id": "localpart", "userid": "localpart",
	"mxid": "localpart", "matrixid": "localpart", "name": "displayname", "fullname": "displayname",
	"display": "displayname", "mail": "email", "emailaddress": "email", "isadmin": "admin",
	"administrator": "admin", "room": "rooms", "channels": "rooms", "key": "recipient",
	"publickey": "recipient", "pubkey": "recipient", "age": "recipient", "sshkey": "recipient",
	"pass": "password", "passwd": "password", "pw": "password", "type": "user_type", "kind": "user_type",
	"provider": "sso_provider", "idp": "sso_provider", "idpid": "sso_provider", "authprovider": "sso_provider",
	"subject": "sso_subject", "sub": "sso_subject", "externalid": "sso_subject", "ssoid": "sso_subject",
}

// suggestColumn finds the known name closest to an unknown one, or "".
func suggestColumn(name string) string {
	norm := normalize(name)
	if s, ok := synonyms[norm]; ok {
		return s
	}
	best, bestDist := "", 3 // more than two edits is a different word
	for known := range columnNames {
		if normalize(known) == norm {
			return known
		}
		if d := suggest.Distance(norm, normalize(known)); d < bestDist || (d == bestDist && known < best) {
			best, bestDist = known, d
		}
	}
	if len(norm) <= bestDist { // "ab" is two edits from nearly anything
		return ""
	}
	return best
}

func unknownHint(suggestion, noun string) string {
	if suggestion != "" {
		return fmt.Sprintf("did you mean %q? The known %s are %s", suggestion, noun, knownColumns)
	}
	return fmt.Sprintf("the known %s are %s", noun, knownColumns)
}

// normalize drops what people vary in names: case, spaces, _ - and dots.
func normalize(s string) string {
	s = short(strings.ToLower(s))
	return strings.Map(func(c rune) rune {
		switch c {
		case ' ', '_', '-', '.':
			return -1
		}
		return c
	}, s)
}

// seenSet remembers the localparts seen so far, to find duplicates, in a few
// tens of bytes per user whatever the names' length; see the package
// documentation for the odds of confusing two names.
