package mas_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/mas"
	"github.com/provision-matrix/provision/internal/mastest"
	"github.com/provision-matrix/provision/internal/matrix"
)

const goodPassword = "correct-horse-battery-staple-42"

// clock is a settable time shared by the fake and the client.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newServer(t *testing.T, o mastest.Options) (*mastest.Server, *mas.Client) {
	t.Helper()
	srv := mastest.New(t, o)
	c, err := mas.NewClient(srv.URL(), srv.Client(), srv.ClientID(), []byte(srv.ClientSecret()), nil)
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func assertIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("error %v: errors.Is(%v) = false, want true", err, target)
	}
}

func assertKind(t *testing.T, err error, want matrix.Kind) {
	t.Helper()
	if got, _ := mas.Classify(err); got != want {
		t.Errorf("Classify(%v) = %v, want %v", err, got, want)
	}
}

func assertNoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a secret", err)
		}
	}
}
