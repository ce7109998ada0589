package batch

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/report"
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

func TestBackoffIsFullJitterAndCapped(t *testing.T) {
	t.Parallel()
	var ceilings []int64
	e := &Engine{}
	e.setDefaults(Options{BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}, nil, nil,
		func(n int64) int64 { ceilings = append(ceilings, n); return n - 1 })
	for n := 1; n <= 6; n++ {
		e.backoff(n)
	}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second, time.Second}
	for i, c := range ceilings {
		if time.Duration(c) != want[i] {
			t.Errorf("retry %d drew from [0, %v), want [0, %v)", i+1, time.Duration(c), want[i])
		}
	}
}
