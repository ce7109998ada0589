package batch

import (
	"context"
	"sync"
	"time"
)

// adaptive bounds the requests in flight with --rate auto: it finds, while the run
// goes on, how many the server takes before a queue forms, and keeps to that.
//
// A homeserver registering users is bound by password hashing: up to its number of
// cores, more requests in flight mean more users per second at the same latency;
// beyond, they only wait in its queue, and each request takes longer. So latency is
// the signal, as in TCP Vegas and the adaptive concurrency limiters of service
// meshes: the mean latency of a window of requests is compared with the lowest such
// mean seen (the server unloaded). Up to twice that counts as flat, and the limit
// grows: from one request, doubling at first (slow start), then by one per window. Beyond, a queue has
// formed and the limit shrinks by a tenth; a 429 cuts it by a quarter. A window is
// as many requests as the limit allows at once, at least 4, and only requests started
// since the last change count, so a change is judged by its own effect.
//
// The limit stays between 1 and the pool's size (--concurrency): a server whose
// latency never grows is simply given the whole pool. If the server itself slows
// down for good, the limit shrinks to 1, where no queue can be of our making, and the
// unloaded latency is learned again there.
type adaptive struct {
	mu       sync.Mutex
	limit    float64
	max      float64
	inflight int
	waiters  []chan struct{} // in arrival order
	base     time.Duration   // the lowest window mean: the server's unloaded latency
	since    time.Time       // only requests started since the last change count
	sum      time.Duration
	n        int
	slow     bool // slow start: no queue seen yet
}

const (
	autoStart     = 1   // requests in flight at first: the unloaded latency is seen
	autoTolerance = 2.0 // latency up to this many times the unloaded one counts as flat
	autoWindow    = 4   // requests at least per judgement
	autoBackoff   = 0.9 // factor on the limit when a queue has formed
	autoCut429    = 0.75
)

func newAdaptive(maxInFlight int) *adaptive {
	m := float64(max(1, maxInFlight))
	return &adaptive{limit: min(autoStart, m), max: m, slow: true}
}

// acquire waits for a slot.
func (a *adaptive) acquire(ctx context.Context) error {
	a.mu.Lock()
	if len(a.waiters) == 0 && a.inflight < a.slots() {
		a.inflight++
		a.mu.Unlock()
		return nil
	}
	ch := make(chan struct{}, 1)
	a.waiters = append(a.waiters, ch)
	a.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		for i, w := range a.waiters {
			if w == ch {
				a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
				a.mu.Unlock()
				return ctx.Err()
			}
		}
		a.mu.Unlock()
		a.cancel() // granted meanwhile: hand the slot on
		return ctx.Err()
	}
}

// cancel returns a slot whose request was never sent.
func (a *adaptive) cancel() {
	a.mu.Lock()
	a.inflight--
	a.grantLocked()
	a.mu.Unlock()
}

// release returns the slot of a request sent at start that took latency.
func (a *adaptive) release(start time.Time, latency time.Duration, res result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inflight--
	switch {
	case res == rateLimited:
		a.change(max(1, a.limit*autoCut429), start.Add(latency))
	case start.Before(a.since):
		// Sent under the previous limit: not this one's effect.
	default:
		a.sum += latency
		a.n++
		if a.n >= max(autoWindow, int(a.limit)) {
			a.judge(start.Add(latency))
		}
	}
	a.grantLocked()
}

// judge compares the window's mean latency with the unloaded one.
func (a *adaptive) judge(now time.Time) {
	mean := a.sum / time.Duration(a.n)
	if a.base == 0 || mean < a.base {
		a.base = mean
	}
	switch {
	case float64(mean) > autoTolerance*float64(a.base):
		if a.limit <= 1 {
			// One request at a time queues behind nothing of ours: the server has
			// slowed down. Learn its new unloaded latency.
			a.base = mean
			a.change(1, now)
			return
		}
		a.change(max(1, a.limit*autoBackoff), now)
	case a.slow:
		a.change(min(a.max, a.limit*2), now)
	default:
		a.change(min(a.max, a.limit+1), now)
	}
}

// change sets a new limit, from now on, and starts a new window.
func (a *adaptive) change(limit float64, now time.Time) {
	if limit < a.limit {
		a.slow = false
	}
	a.limit = limit
	a.since = now
	a.sum, a.n = 0, 0
}

func (a *adaptive) slots() int { return max(1, int(a.limit)) }

// grantLocked hands free slots to waiters, first come first served.
func (a *adaptive) grantLocked() {
	for len(a.waiters) > 0 && a.inflight < a.slots() {
		ch := a.waiters[0]
		a.waiters = a.waiters[1:]
		a.inflight++
		ch <- struct{}{}
	}
}

// current is the limit now (for logs and tests).
func (a *adaptive) current() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.limit
}

// waiting is the number of waiters (for tests).
func (a *adaptive) waiting() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.waiters)
}
