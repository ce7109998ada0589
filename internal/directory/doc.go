// Package directory reads the roster from an LDAP directory (OpenLDAP, 389-ds,
// FreeIPA, Active Directory) instead of a file.
//
// # One search, validated like a file
//
// [Read] runs one search, with the simple paged results control (RFC 2696)
// so that a server's size limit — Active Directory's MaxPageSize of 1,000,
// OpenLDAP's limits for non-root binds — cannot cut the roster short. Each
// entry, as it arrives, is turned into a small [roster.Record] by the
// [Mapping] (presets ldap and ad, or an explicit mapping) and validated by
// [roster.Records], the same rules and duplicate detection the CSV and YAML
// readers apply; the ldap.Entry is dropped at once. Problems name the entry
// and the attribute:
//
//	uid=Bob Smith,ou=people,dc=example,dc=org: uid: "Bob Smith" is not a valid localpart: space at position 4 — use only a-z, 0-9 and . _ = - / +
//
// and come back together as *[roster.Errors], printed as a file's are.
//
// # Why a spool
//
// A file roster is read twice, once to check it and once to run it. A
// directory must not be: it changes under us, and a second search could give
// another answer than the one validated. So the validated people are kept,
// and kept on disk rather than in memory: a temporary file of mode 0600,
// unlinked as soon as it is created (on Unix nothing is left behind however
// the process ends), holding each person in a compact binary record (about
// 100 bytes). [Result.Each] reads it back as many times as the run needs.
// The memory the search uses does not grow with the directory, except for
// the roster's duplicate detection (20 to 40 bytes per person: some 4 MB
// for 100,000 people), where an in-memory list of 100,000 users would take
// tens of megabytes under the CLI's 44 MiB soft limit.
//
// # Safety
//
//   - A search that finds nobody, or only disabled accounts, is an
//     [ErrEmptyResult]: an empty answer is far more often a wrong base DN, a
//     filter typo or a service account that lost its read access than a
//     company that emptied overnight. [Stats].Users lets the caller refuse
//     "far fewer than last time" as well.
//   - The password is sent only over TLS (ldaps:// or StartTLS), except to a
//     loopback address; plain ldap:// elsewhere is refused before any
//     connection ([ErrInsecure]). The password is never in an error.
//   - Active Directory accounts with ACCOUNTDISABLE set in
//     userAccountControl are not on the roster (the ad preset), and are
//     counted in [Stats].Disabled.
//
// # Rooms
//
// A [RoomsMap] gives rooms by group, read from each person's memberOf
// attribute (see [RoomsMap] for why memberOf rather than a group search).
//
// The library never prints: cmd/provision reports.
package directory
