// Package matrix talks to a Matrix homeserver over HTTP: shared-secret
// registration in both its Synapse and Dendrite dialects, password login and
// logout, username availability, the published password policy, and the
// Synapse admin API.
//
// The package has no retry policy of its own: the batch package owns retries
// and the shared rate limiter. Instead every error is typed so that the caller
// can decide. A refusal by the server is an [*Error] carrying the HTTP status,
// the Matrix errcode and any Retry-After; a failed exchange (refused
// connection, reset, timeout, unreadable answer) is a [*NetError]. [Classify]
// turns either into a [Kind] (retry, wait, skip this user, or stop the run),
// and [MayHaveLanded] says whether a failed request could nevertheless have
// taken effect, which is what decides whether a registration may be retried
// blindly.
//
// Secrets (the shared secret, access tokens, passwords) travel only in request
// bodies and Authorization headers. They never appear in URLs, in error
// strings, or in anything this package returns, and the package never prints
// or logs.
package matrix
