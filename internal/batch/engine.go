package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/provision-matrix/provision/internal/matrix"
)

// Engine sends every request provision makes to a server, the preflight's and the
// paging reads included, under one policy:
//
//   - a 429 pauses the whole pool for its Retry-After (up to MaxRetryAfter; a server
//     that asks for longer fails the request with *WaitTooLongError, said at once
//     instead of a run that silently stalls) and lowers the shared rate;
//   - a 5xx, a reset, a dropped answer or a timeout is retried with full-jitter
//     exponential backoff until the call's time budget (RetryBudget) runs out: a
//     batch job keeps trying a transient fault for minutes, not a fixed count of
//     times that a proxy's bad second can use up;
//   - anything else is the answer.
//
// State-changing requests (writes) wait for the rate limit; reads wait only for the
// pauses that 429s impose, since they cost the server no password hashing.
type Engine struct {
	opts   Options
	writes *throttle
	reads  *throttle
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
	jitter func(n int64) int64
	log    *slog.Logger
	// secrets are blanked out of every server message before it reaches an error, a
	// report row or a log line: a server or proxy may quote the request, or its own
	// configuration, in an error.
	secrets []string
}

// longWait is a Retry-After long enough to be said at the default log level.
const longWait = 30 * time.Second

// Defaults of Options that the engine fills in.
const (
	DefaultRetryBudget   = 5 * time.Minute
	DefaultMaxRetryAfter = 10 * time.Minute
)

// NewEngine makes the engine of a run; zero options get their defaults. now, sleep
// and jitter are seams for tests (nil: the real clock and crypto-free randomness).
func NewEngine(o Options, log *slog.Logger, secrets []string) *Engine {
	e := &Engine{log: log, secrets: secrets}
	e.setDefaults(o, nil, nil, nil)
	return e
}

func (e *Engine) setDefaults(o Options, now func() time.Time, sleep func(context.Context, time.Duration) error, jitter func(int64) int64) {
	if o.Concurrency < 1 {
		o.Concurrency = 1
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 60 * time.Second
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 250 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.RetryBudget <= 0 {
		o.RetryBudget = DefaultRetryBudget
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	if jitter == nil {
		jitter = rand.Int64N
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.opts, e.now, e.sleep, e.jitter = o, now, sleep, jitter
	if o.AutoRate {
		e.writes = newThrottle(0, now, sleep)
		e.writes.conc = newAdaptive(o.Concurrency)
		e.writes.conc.judged = func(limit float64, latency, unloaded time.Duration, perSecond float64) {
			e.log.Debug("--rate auto", "in_flight", limit, "latency", latency, "unloaded", unloaded, "per_second", perSecond)
		}
	} else {
		e.writes = newThrottle(o.Rate, now, sleep)
	}
	e.reads = newThrottle(0, now, sleep)
}

// Options returns the options in force, defaults filled in.
func (e *Engine) Options() Options { return e.opts }

// Call follows one logical request through its attempts.
type Call struct {
	// Write: the request changes state (and costs the server a password hash): it
	// waits for the rate limit. Reads wait only for 429 pauses.
	Write bool
	// Password is the password the request carries, if any: blanked out of every
	// answer.
	Password string

	// FailUnreachable: a server that refuses the connection (or whose host has no
	// address) is the answer, not a fault to wait out: the preflight's first request,
	// where it means a wrong --homeserver.
	FailUnreachable bool

	Attempts    int  // requests sent
	MaybeLanded bool // an attempt may have taken effect without an answer
	started     time.Time
}

// ErrInterrupted is returned (wrapped) when the run, or one request of it, stopped
// before it was done because the operator interrupted it or --timeout was reached.
// It is the one "interrupted" of the batch: callers test it with errors.Is.
var ErrInterrupted = errors.New("interrupted")

// ExhaustedError is a request still failing when its time budget ran out.
type ExhaustedError struct {
	Attempts int
	Budget   time.Duration
	Err      error
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("still failing after %d tries in %s: %v", e.Attempts, e.Budget, e.Err)
}
func (e *ExhaustedError) Unwrap() error { return e.Err }

// WaitTooLongError is a 429 whose Retry-After is longer than the run may wait.
type WaitTooLongError struct {
	Wait, Max time.Duration
	Err       error
}

func (e *WaitTooLongError) Error() string {
	return fmt.Sprintf("the server asked to wait %s before the next request, more than the %s allowed (--max-retry-after): %v", e.Wait.Round(time.Second), e.Max, e.Err)
}
func (e *WaitTooLongError) Unwrap() error { return e.Err }

// Do sends fn until it has a definite answer and returns it: nil, the server's
// refusal, an *ExhaustedError, a *WaitTooLongError, or an error wrapping
// ErrInterrupted when stopCtx ended while the request waited for its turn or a retry.
// stopCtx ends waiting; reqCtx bounds each request (a request in flight is let finish
// when the run is interrupted, so that its outcome is known).
func (e *Engine) Do(stopCtx, reqCtx context.Context, c *Call, fn func(context.Context) error) error {
	th := e.reads
	if c.Write {
		th = e.writes
	}
	if c.started.IsZero() {
		c.started = e.now()
	}
	retries := 0
	for {
		tk, err := th.acquire(stopCtx)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInterrupted, err)
		}
		c.Attempts++
		ctx, cancel := context.WithTimeout(reqCtx, e.opts.RequestTimeout)
		err = fn(ctx)
		cancel()
		kind, wait := classify(err)
		th.release(tk, throttleResult(err, kind), wait)
		if err == nil {
			return nil
		}
		e.scrub(err, c.Password)
		if reqCtx.Err() != nil {
			// The run itself is failing (the journal or the handoff could not be
			// written): no retry, the answer is this error.
			return err
		}
		if c.FailUnreachable && matrix.Unreachable(err) {
			return err
		}
		if kind == matrix.Retry && mayHaveLanded(err) {
			c.MaybeLanded = true
		}
		switch kind {
		case matrix.RateLimited:
			if wait > e.opts.MaxRetryAfter {
				return &WaitTooLongError{Wait: wait, Max: e.opts.MaxRetryAfter, Err: err}
			}
			if e.exhausted(c, retries) {
				return &ExhaustedError{Attempts: c.Attempts, Budget: e.opts.RetryBudget, Err: err}
			}
			if wait >= longWait {
				// Said at the default level: a run that stands still for minutes must
				// say why.
				e.log.Warn("the server asked to wait before the next request (429); waiting", "seconds", int(wait.Seconds()))
			} else {
				e.log.Debug("rate limited", "retry_after", wait, "rate", float64(e.writes.limit()))
			}
			continue
		case matrix.Retry:
			retries++
			if e.exhausted(c, retries) {
				return &ExhaustedError{Attempts: c.Attempts, Budget: e.opts.RetryBudget, Err: err}
			}
			d := e.backoff(retries)
			e.log.Debug("retrying", "after", d, "error", errorText(err, c.Password))
			if err := e.sleep(stopCtx, d); err != nil {
				return fmt.Errorf("%w: %w", ErrInterrupted, err)
			}
			continue
		}
		return err
	}
}

// exhausted reports whether the call has used its time budget (or, when the options
// set one, its count of retries).
func (e *Engine) exhausted(c *Call, retries int) bool {
	if e.opts.MaxAttempts > 0 && retries >= e.opts.MaxAttempts {
		return true
	}
	return e.now().Sub(c.started) >= e.opts.RetryBudget
}

// backoff is "full jitter" exponential backoff: uniform in [0, min(max, base·2^n)).
// Spreading retries randomly keeps a pool that failed together from retrying together.
func (e *Engine) backoff(n int) time.Duration {
	ceil := e.opts.BackoffBase << min(n, 20)
	if ceil <= 0 || ceil > e.opts.BackoffMax {
		ceil = e.opts.BackoffMax
	}
	return time.Duration(e.jitter(int64(ceil)))
}

// scrub blanks the password and the run's secrets out of the server's message in err,
// in place, so that nothing made from it holds them.
func (e *Engine) scrub(err error, password string) {
	scrubError(err, append([]string{password}, e.secrets...)...)
}

// Classifier is an error of another account system than the Matrix client (MAS's
// admin API, say) that knows what a caller should do about it.
type Classifier interface {
	Classify() (matrix.Kind, time.Duration)
	MayHaveLanded() bool
}

func classify(err error) (matrix.Kind, time.Duration) {
	var c Classifier
	if errors.As(err, &c) {
		return c.Classify()
	}
	return matrix.Classify(err)
}

func mayHaveLanded(err error) bool {
	var c Classifier
	if errors.As(err, &c) {
		return c.MayHaveLanded()
	}
	return matrix.MayHaveLanded(err)
}

// throttleResult tells the throttle how a request went: answered (even with a
// refusal), rate-limited, or without an answer.
func throttleResult(err error, kind matrix.Kind) result {
	switch {
	case err == nil:
		return accepted
	case kind == matrix.RateLimited:
		return rateLimited
	case kind == matrix.Retry:
		return noAnswer
	}
	return accepted
}
