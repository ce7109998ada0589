package batch

import (
	"fmt"
	"strings"

	"github.com/provision-matrix/provision/internal/sanitize"
)

// maxUserIDLength is the Matrix spec's limit on a full user ID, in bytes.
const maxUserIDLength = 255

// CheckUserID checks the user ID a server answered for the account it was asked to
// create: it must be @localpart:serverName, with the localpart asked for (servers
// lower-case it; the roster's is lower case already) and, once the server name is
// known, that server name. A server that answers nothing, another user, or text
// with control characters must not label a password with it: the error names what
// came back, made printable.
func CheckUserID(userID, localpart, serverName string) error {
	bad := func(why string) error {
		return fmt.Errorf("the server answered a user ID that is not @%s:%s (%s): %q; whether the account was created is not known, and the next run will find out", localpart, orAny(serverName), why, sanitize.Line(userID, 80))
	}
	switch {
	case userID == "":
		return fmt.Errorf("the server answered no user ID for @%s:%s; whether the account was created is not known, and the next run will find out", localpart, orAny(serverName))
	case len(userID) > maxUserIDLength:
		return bad("longer than 255 bytes")
	case !sanitize.Printable(userID) || strings.ContainsAny(userID, " \t"):
		return bad("it holds control characters or spaces")
	}
	lp, sn, ok := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	switch {
	case !strings.HasPrefix(userID, "@") || !ok:
		return bad("not a Matrix user ID")
	case lp != localpart:
		return bad("another localpart")
	case serverName != "" && sn != serverName:
		return bad("another server name")
	case sn == "":
		return bad("no server name")
	}
	return nil
}

func orAny(serverName string) string {
	if serverName == "" {
		return "<server>"
	}
	return serverName
}
