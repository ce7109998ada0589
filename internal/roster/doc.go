// Package roster reads the list of people to provision from a CSV or YAML
// file, validates every entry before anything is sent to a homeserver, and
// streams the users to the caller.
//
// Reading happens in two passes over the same input. [Check] reads the whole
// roster and reports every problem it finds, each with its file, line and
// column, so that an operator can fix the file in one go. [Each] reads it
// again and hands the users, in file order, to a callback; it applies the same
// rules and stops at the first problem, so it never yields a user that Check
// would have refused (the file may have changed in between).
//
// # CSV
//
// The first non-blank line is a header naming the columns. Names are
// case-insensitive and surrounding spaces are ignored:
//
//	localpart    (alias username) required
//	displayname  (alias display_name)
//	email
//	admin        true/false, yes/no, 1/0 (any case); empty means false
//	user_type    free text; empty means a normal user
//	password     supplied password; empty means "generate one"
//	rooms        room IDs (!id:server) or aliases (#alias:server), separated by spaces or ;
//	recipient    the user's own age (age1...) or SSH public key
//	sso_provider the single sign-on provider, as the homeserver names it
//	sso_subject  the person's ID at that provider
//
// A user with an sso_subject is bound to single sign-on and gets no
// password: both SSO columns are given or neither (the provider may come
// from [Options].SSOProvider, --sso-provider, instead), the password column
// must then be empty, and two users cannot share a (provider, subject)
// pair. The provider is Synapse's auth_provider ("oidc", "oidc-<idp_id>",
// "saml", "cas") or, with MAS, the upstream provider's ID or name: any
// printable text of at most 255 bytes, but a value starting "oidc-" must
// be a valid Synapse idp_id after it, Synapse's own names must be
// lowercase, and "provision" is refused: it names the marker provision
// puts on the accounts it creates. A subject is printable text of at most 255 bytes (the limit
// OpenID Connect sets on sub), compared exactly as Synapse compares it.
//
// An unknown column is an error, with a "did you mean" hint when the name is
// close to a known one: a typo in a header must not silently drop a column.
// A missing localpart column, a duplicate column and a row with the wrong
// number of fields are errors too.
//
// The file may start with a UTF-8 byte order mark; lines may end in LF or
// CRLF; fields may be quoted and then contain commas, newlines and doubled
// quotes (RFC 4180, as read by encoding/csv). Spaces after a comma are ignored,
// and so are spaces at the end of a value, except in the password column:
// a password that begins or ends with white space is refused rather than
// silently changed. Empty lines, and rows whose cells are all empty (as
// spreadsheets export them), are skipped.
//
// A line starting with '#' is not a comment: CSV has no comments, and a
// spreadsheet export never writes any, so such a line is read as a user whose
// localpart starts with '#', which is then refused with a hint to delete the
// line. This keeps the reader a plain RFC 4180 reader.
//
// # Exports from other systems
//
// With [Options].Columns (--columns), a CSV exported from Google Workspace,
// Microsoft Entra ID or Okta, or any CSV described by an explicit mapping, is
// read as it is: the export's own columns are mapped to the roster's, the
// localpart is derived from an address or login ([DeriveLocalpart]), and two
// people who would get the same localpart are a problem naming both lines.
// See [ParseColumns].
//
// # YAML
//
// A YAML roster is a sequence of mappings, or a mapping with the single key
// "users" holding that sequence. The keys are the CSV column names; "rooms"
// may be a YAML list or a string like the CSV cell, and "admin" accepts YAML
// booleans as well as the CSV words. Aliases (*name) and merge keys (<<) are
// refused: a roster never needs them, and refusing them means a
// "billion laughs" document cannot expand. YAML is read whole, so it is
// limited to 16 MiB; larger rosters should be CSV, which is streamed.
//
// # Positions
//
// Lines are 1-based and count the header line. Columns are 1-based and count
// bytes, as Go's own tools do; a byte order mark is not counted. A problem
// with a value points at the start of the value (for CSV the start of the
// field, its opening quote if it is quoted); the message then says at which
// character of the value the trouble is.
//
// # Limits
//
// A line, or a CSV record spread over several lines by a quoted newline,
// longer than 1 MiB stops the reading with an error, so a stray quote or a
// file that is not a roster fails fast instead of being read into memory.
// Invalid UTF-8 and NUL bytes are errors naming their line and column, and so
// are UTF-16, a spreadsheet's ZIP file and lines ended by a lone CR, which
// are refused at once.
//
// Duplicate localparts are found after lowercasing, without keeping the
// names: each seen localpart costs one map entry holding a 64-bit hash, a
// second independent 32-bit hash and its line number (20 to 40 bytes per
// user, depending on how full the map is: some 38 MB for a million users). Two different localparts are confused only if both hashes
// collide, a chance of about n²/2⁹⁷ for n users (below 10⁻¹⁷ for a million);
// a collision of the first hash alone is detected and then resolved by
// comparing the names themselves. The hash seeds are random, so even that
// chance does not repeat from one run to the next. Users bound to single
// sign-on cost a second entry of the same kind, for their (provider,
// subject) pair.
package roster
