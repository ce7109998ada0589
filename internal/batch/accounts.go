package batch

import (
	"context"
	"errors"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/reconcile"
	"github.com/provision-matrix/provision/internal/roster"
)

// Accounts is an account system: the one part of a run that differs between Synapse's
// and Dendrite's shared-secret registration, Synapse's admin API and the Matrix
// Authentication Service. Everything around it — the journal before the request,
// the request engine, the user ID check, the handoff, the report — is the same for
// all of them (see Runner.createAccount).
//
// Adding an account system means one type that implements Accounts (and, for the
// sync features, AdminAPI), plus its flags; nothing else in the pipeline changes.
type Accounts interface {
	// Create makes the account userID for u with password ("" for an account that
	// logs in only through single sign-on), sending each of its requests through rq.
	// It returns what the server did, or an error wrapping ErrExists when the name
	// was taken before the request (nothing was changed). A failure after some
	// requests went through leaves rq's call marked MaybeLanded when the account
	// may exist: the next run settles it by logging in.
	Create(ctx context.Context, rq Requests, u roster.User, userID, password string) (Created, error)
}

// Created is what Create did.
type Created struct {
	// UserID is the user ID the server answered; CheckUserID vets it.
	UserID string
	// Replaced: the account existed by the time the password was set (Synapse's PUT
	// answered 200, not 201): the password handed off is live all the same.
	Replaced bool
}

// ErrExists is the answer of Accounts.Create for a name that is taken.
var ErrExists = errors.New("the account exists")

// Requests sends one user's requests through the run's engine, so that each obeys
// the rate limit, 429s, the retry budget and an interruption. Its Call counts the
// state-changing ones.
type Requests struct {
	e         *Engine
	stop, req context.Context
	Call      *Call
	// Resumed: an earlier attempt (this run's or an interrupted run's) journaled
	// an intent to create this account and recorded no success. An account
	// system whose Create takes several requests (MAS) uses it to finish what
	// that attempt began instead of calling the account someone else's.
	Resumed bool
	// intent journals the password before the first state-changing request leaves;
	// reads before it (is the name free?) need no journal record.
	intent   func() error
	intended *bool
}

// journalFailed is a journal write that failed before a request: the run stops.
type journalFailed struct{ err error }

func (e *journalFailed) Error() string { return "journal: " + e.err.Error() }
func (e *journalFailed) Unwrap() error { return e.err }

// Write sends a state-changing request (under the rate limit), journaling the
// password first if this is the user's first one.
func (r Requests) Write(fn func(context.Context) error) error {
	if r.intent != nil && !*r.intended {
		if err := r.intent(); err != nil {
			return &journalFailed{err}
		}
		*r.intended = true
	}
	c := *r.Call
	c.Write = true
	err := r.e.Do(r.stop, r.req, &c, fn)
	r.Call.Attempts, r.Call.MaybeLanded = c.Attempts, c.MaybeLanded
	return err
}

// Read sends a request that changes nothing.
func (r Requests) Read(fn func(context.Context) error) error {
	c := *r.Call
	c.Write = false
	return r.e.Do(r.stop, r.req, &c, fn)
}

// SharedSecret creates accounts with the registration shared secret
// (/_synapse/admin/v1/register), on Synapse and Dendrite.
type SharedSecret struct {
	Server Server
	Secret []byte
}

var _ Accounts = SharedSecret{}

func (s SharedSecret) Create(ctx context.Context, rq Requests, u roster.User, userID, password string) (Created, error) {
	var reg matrix.Registered
	err := rq.Write(func(ctx context.Context) error {
		var err error
		reg, err = s.Server.RegisterSharedSecret(ctx, s.Secret, matrix.Registration{
			Localpart:   u.Localpart,
			Password:    password,
			DisplayName: u.DisplayName,
			UserType:    u.UserType,
			Admin:       u.Admin,
		})
		return err
	})
	if matrix.IsUserInUse(err) {
		return Created{}, errors.Join(ErrExists, err)
	}
	return Created{UserID: reg.UserID}, err
}

// SynapseAdmin creates accounts through Synapse's admin API (PUT
// /_synapse/admin/v2/users/...), with provision's marker, the roster's profile and,
// for a single sign-on user, the external ID the login will land on.
type SynapseAdmin struct {
	API AdminAPI
}

var _ Accounts = SynapseAdmin{}

func (s SynapseAdmin) Create(ctx context.Context, rq Requests, u roster.User, userID, password string) (Created, error) {
	// A plan may be minutes old; a PUT on an account that appeared since (a single
	// sign-on login creates one) would reset its password. Narrow the window to the
	// moment before the PUT.
	var appeared bool
	if err := rq.Read(func(ctx context.Context) error {
		_, err := s.API.GetUser(ctx, userID)
		if errors.Is(err, matrix.ErrNotFound) {
			return nil
		}
		appeared = err == nil
		return err
	}); err != nil {
		return Created{}, err
	}
	if appeared {
		return Created{}, ErrExists
	}
	put := reconcile.CreateBody(u, userID)
	if password != "" {
		put.Password = &password
	}
	var created bool
	err := rq.Write(func(ctx context.Context) error {
		var err error
		created, err = s.API.PutUser(ctx, userID, put)
		return err
	})
	if err != nil {
		return Created{}, err
	}
	// Synapse's PUT answers no user ID: it is the one in the path.
	return Created{UserID: userID, Replaced: !created}, nil
}
