package batch

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// fakeClock is a clock for the throttle whose sleeps advance time.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.now = c.now.Add(d)
	return nil
}

func newTestThrottle(perSecond float64) (*throttle, *fakeClock) {
	c := &fakeClock{now: time.Unix(1000, 0)}
	return newThrottle(perSecond, c.Now, c.Sleep), c
}

// send runs n requests through th, spaced by gap, all answered with res.
func send(t *testing.T, th *throttle, c *fakeClock, n int, gap time.Duration, res result) {
	t.Helper()
	for range n {
		tk, err := th.acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.now = c.now.Add(gap)
		th.release(tk, res, 0)
	}
}

func TestThrottleCutsTo90PercentOn429AndRecovers(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(20)
	send(t, th, c, 20, 50*time.Millisecond, accepted) // 20/s, all accepted

	th.rateLimited(3 * time.Second)
	if got := th.limit(); got != 18 {
		t.Errorf("after one 429 the rate is %v, want 18 (90%% of the 20/s sent and accepted)", got)
	}
	// Every worker waits out the pause, not just the one that got the 429.
	before := c.now
	if err := th.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := c.now.Sub(before); waited < 3*time.Second {
		t.Errorf("waited %v before the next request, want at least the 3s Retry-After", waited)
	}
	for range 200 {
		th.ok()
	}
	if got := th.limit(); got != 20 {
		t.Errorf("after 200 successes the rate is %v, want it back at the configured 20", got)
	}
}

// A pool far above the server's limit lands just under what the server accepted, in
// one cut, rather than halving its way down through a storm of 429s.
func TestThrottleCutsToWhatTheServerAccepted(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(0) // no limit
	if th.limit() != rate.Inf {
		t.Fatalf("--rate 0 gave limit %v, want no limit", th.limit())
	}
	// 200 requests/s, of which the server accepts one in four (50/s).
	for i := range 64 {
		res := rateLimited
		if i%4 == 0 {
			res = accepted
		}
		tk, _ := th.acquire(context.Background())
		c.now = c.now.Add(5 * time.Millisecond)
		if res == accepted {
			th.release(tk, res, 0)
		} else if i == 63 {
			th.release(tk, res, time.Millisecond)
		}
	}
	if l := th.limit(); l < 40 || l > 50 {
		t.Errorf("after a 429 at 200/s with 50/s accepted, the rate is %v, want 90%% of 50", l)
	}
}

// One congestion event cuts once: the 429s answering requests sent before the cut
// say nothing new.
func TestThrottleCutsOncePerCongestionEvent(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(100)
	send(t, th, c, 50, 10*time.Millisecond, accepted)
	var inFlight []ticket
	for range 8 {
		tk, _ := th.acquire(context.Background())
		inFlight = append(inFlight, tk)
		c.now = c.now.Add(10 * time.Millisecond)
	}
	for _, tk := range inFlight {
		th.release(tk, rateLimited, time.Millisecond)
	}
	if got := th.limit(); got != 90 {
		t.Errorf("8 429s for requests sent together cut the rate to %v, want one cut to 90", got)
	}
	// A request sent after the cut and refused again is a new event.
	tk, _ := th.acquire(context.Background())
	c.now = c.now.Add(time.Millisecond)
	th.release(tk, rateLimited, time.Millisecond)
	if got := th.limit(); got >= 90 {
		t.Errorf("a 429 after the cut left the rate at %v", got)
	}
}

func TestThrottleUnlimitedBecomesLimitedOn429(t *testing.T) {
	t.Parallel()
	th, c := newTestThrottle(0)
	send(t, th, c, 40, 25*time.Millisecond, accepted) // about 40/s
	th.rateLimited(time.Second)
	if l := th.limit(); l == rate.Inf || l > 38 || l < 34 {
		t.Errorf("after a 429 with no limit set, the rate is %v, want 90%% of the observed 40/s", l)
	}
}

// adaptiveRun sends requests through a with a server of the given capacity: up to
// capacity requests at once take service each; beyond, requests queue, so latency
// grows with the requests in flight. It returns the limit after rounds windows.
func adaptiveRun(a *adaptive, capacity int, service time.Duration, rounds int) float64 {
	now := time.Unix(1000, 0)
	for range rounds {
		n := a.slots()
		latency := service
		if n > capacity {
			latency = service * time.Duration(n) / time.Duration(capacity)
		}
		for range max(autoWindow, n) {
			_ = a.acquire(context.Background())
			a.release(now, latency, accepted)
			now = now.Add(latency / time.Duration(n))
		}
		now = now.Add(latency)
	}
	return a.current()
}

// --rate auto finds the server's capacity: the limit grows while latency stays flat
// and settles where a queue of about the same size forms, never at 1 or the pool.
func TestAdaptiveFindsTheServersCapacity(t *testing.T) {
	t.Parallel()
	for _, capacity := range []int{2, 8, 30} {
		a := newAdaptive(256)
		got := adaptiveRun(a, capacity, 50*time.Millisecond, 200)
		// It oscillates: up by one while the queue is short enough, down a tenth when
		// latency passes twice the unloaded one.
		hi := (autoTolerance*float64(capacity) + 1) / autoBackoff
		if got < float64(capacity) || got > hi {
			t.Errorf("server taking %d at once: limit settled at %.1f, want between %d and %.1f", capacity, got, capacity, hi)
		}
	}
}

// A server whose latency never grows gets the whole pool; a 429 cuts the limit by a
// quarter.
func TestAdaptiveFlatLatencyAnd429(t *testing.T) {
	t.Parallel()
	a := newAdaptive(64)
	if got := adaptiveRun(a, 1000, time.Millisecond, 50); got != 64 {
		t.Errorf("flat latency: limit %v, want the pool's 64", got)
	}
	_ = a.acquire(context.Background())
	a.release(time.Unix(5000, 0), time.Millisecond, rateLimited)
	if got := a.current(); got != 48 {
		t.Errorf("after a 429: limit %v, want 48", got)
	}
}

// A server that slows down for good drives the limit to 1, where the new unloaded
// latency is learned, and the limit grows again from there.
func TestAdaptiveRelearnsASlowerServer(t *testing.T) {
	t.Parallel()
	a := newAdaptive(64)
	adaptiveRun(a, 8, 10*time.Millisecond, 100)
	got := adaptiveRun(a, 8, 100*time.Millisecond, 300) // ten times slower, same capacity
	if got < 8 {
		t.Errorf("after the server slowed down the limit is %.1f, want it back at its capacity 8 or more", got)
	}
}

// Waiters get slots in arrival order, and a cancelled wait gives its slot on.
func TestAdaptiveSlots(t *testing.T) {
	t.Parallel()
	a := newAdaptive(1)
	if err := a.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error)
	go func() { cancelled <- a.acquire(ctx) }()
	got := make(chan int, 2)
	go func() {
		for a.waiting() < 1 {
			time.Sleep(time.Millisecond)
		}
		_ = a.acquire(context.Background())
		got <- 2
	}()
	for a.waiting() < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-cancelled; err == nil {
		t.Error("a cancelled wait got a slot")
	}
	a.cancel() // the first slot, never used
	if <-got != 2 {
		t.Error("the second waiter did not get the slot")
	}
}
