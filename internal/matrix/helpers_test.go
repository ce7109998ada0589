package matrix_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

const (
	testSecret     = "s3cr3t-shared-registration-key"
	testAdminToken = "syt_admin_token_for_tests"
	testPassword   = "Tr0ub4dor&3-correct-horse"
)

var dialects = []matrixtest.Dialect{matrixtest.Synapse, matrixtest.Dendrite}

func newServer(t *testing.T, o matrixtest.Options) (*matrixtest.Server, *matrix.Client) {
	t.Helper()
	srv := matrixtest.NewServer(t, o)
	c, err := matrix.NewClient(srv.URL(), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

// assertNoSecrets fails if err's text repeats any of the secrets.
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

func assertKind(t *testing.T, err error, want matrix.Kind) {
	t.Helper()
	if got, _ := matrix.Classify(err); got != want {
		t.Errorf("Classify(%v) = %v, want %v", err, got, want)
	}
}

func assertIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("error %v: errors.Is(%v) = false, want true", err, target)
	}
}

// clock is a settable time for nonce expiry tests.
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

// onRequest returns a Faults function that calls fn (without a fault) for
// the requests that match.
func onRequest(match func(*http.Request) bool, fn func()) func(*http.Request) matrixtest.Fault {
	return func(r *http.Request) matrixtest.Fault {
		if match(r) {
			fn()
		}
		return matrixtest.Fault{}
	}
}

var (
	registerPOST = matrixtest.Route(http.MethodPost, "/_synapse/admin/v1/register")
	registerGET  = matrixtest.Route(http.MethodGet, "/_synapse/admin/v1/register")
)
