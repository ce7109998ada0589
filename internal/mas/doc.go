// Package mas talks to the admin API of Matrix Authentication Service (MAS),
// the OAuth 2.0 server that handles logins for homeservers with delegated
// authentication (MSC3861). On such a server Synapse's own account endpoints
// (shared-secret registration, the admin user API's password reset) are gone:
// accounts live in MAS and are managed through /api/admin/v1.
//
// The client authenticates with the OAuth 2.0 client credentials grant
// (client_secret_basic) as a client listed in MAS's policy.data.admin_clients,
// caches the access token and renews it before it expires, and once more if
// the admin API refuses it. It is safe for concurrent use.
//
// Like package matrix, this package has no retry policy. A refusal by MAS is
// an [*Error] (HTTP status and the titles of MAS's {"errors": [...]} body),
// matched by sentinels such as [ErrUserExists] with errors.Is; a failed
// exchange is a [*matrix.NetError]. [Classify] and [MayHaveLanded] say what
// to do about either, in the same terms as package matrix, so that one retry
// engine serves both.
//
// The behaviour was read from MAS's source, element-hq/matrix-authentication-service
// (crates/handlers/src/admin/v1, crates/handlers/src/oauth2/token.rs,
// policies/authorization_grant). The client secret, access tokens and
// passwords never appear in URLs, errors or anything this package returns, and
// the package never prints or logs.
package mas
