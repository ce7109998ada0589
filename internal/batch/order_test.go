package batch

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/report"
	"golang.org/x/time/rate"
)

func TestOrdererEmitsInOrderWithBoundedWindow(t *testing.T) {
	t.Parallel()
	const n, window = 500, 8
	var got []string
	var maxPending int
	var o *orderer
	o = newOrderer(window, func(r report.Row) error {
		got = append(got, r.Localpart)
		maxPending = max(maxPending, len(o.pending))
		return nil
	})
	var wg sync.WaitGroup
	for i := range n {
		if err := o.reserve(context.Background(), i); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			if err := o.done(i, report.Row{Localpart: string(rune('a'+i%26)) + string(rune('0'+i/26%10))}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("emitted %d rows, want %d", len(got), n)
	}
	for i, lp := range got {
		if want := string(rune('a'+i%26)) + string(rune('0'+i/26%10)); lp != want {
			t.Fatalf("row %d = %s, want %s: rows out of roster order", i, lp, want)
		}
	}
	if maxPending > window {
		t.Errorf("held %d rows at once, window is %d", maxPending, window)
	}
}

func TestThrottleHalvesOn429AndRecovers(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	var slept time.Duration
	th := newThrottle(20, clock, func(_ context.Context, d time.Duration) error { slept += d; now = now.Add(d); return nil })

	th.rateLimited(3 * time.Second)
	if got := th.limit(); got != 10 {
		t.Errorf("after one 429 the rate is %v, want 10 (halved)", got)
	}
	th.rateLimited(0)
	if got := th.limit(); got != 5 {
		t.Errorf("after two 429s the rate is %v, want 5", got)
	}
	// Every worker waits out the pause, not just the one that got the 429.
	if err := th.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if slept < 3*time.Second {
		t.Errorf("waited %v before the next request, want at least the 3s Retry-After", slept)
	}
	for range 200 {
		th.ok()
	}
	if got := th.limit(); got != 20 {
		t.Errorf("after 200 successes the rate is %v, want it back at the configured 20", got)
	}
}

func TestThrottleUnlimitedBecomesLimitedOn429(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	th := newThrottle(0, func() time.Time { return now }, func(_ context.Context, d time.Duration) error { now = now.Add(d); return nil })
	if th.limit() != rate.Inf {
		t.Fatalf("--rate 0 gave limit %v, want no limit", th.limit())
	}
	// 40 requests over 1 s: the pool runs at about 40/s.
	for range 40 {
		_ = th.wait(context.Background())
		now = now.Add(25 * time.Millisecond)
	}
	th.rateLimited(time.Second)
	if l := th.limit(); l == rate.Inf || l > 25 || l < 15 {
		t.Errorf("after a 429 with no limit set, the rate is %v, want about half the observed 40/s", l)
	}
}

func TestBackoffIsFullJitterAndCapped(t *testing.T) {
	t.Parallel()
	r := &Runner{Opts: Options{BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}}
	var ceilings []int64
	r.Jitter = func(n int64) int64 { ceilings = append(ceilings, n); return n - 1 }
	for n := 1; n <= 6; n++ {
		r.backoff(n)
	}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second, time.Second}
	for i, c := range ceilings {
		if time.Duration(c) != want[i] {
			t.Errorf("retry %d drew from [0, %v), want [0, %v)", i+1, time.Duration(c), want[i])
		}
	}
}
