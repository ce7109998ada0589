package batch

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/provision-matrix/provision/internal/journal"
	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/report"
	"github.com/provision-matrix/provision/internal/roster"
)

// instantServer creates every account at once, in memory: the run's own cost is
// all that is left to measure.
type instantServer struct{}

func (instantServer) RegisterSharedSecret(_ context.Context, _ []byte, r matrix.Registration) (matrix.Registered, error) {
	return matrix.Registered{UserID: "@" + r.Localpart + ":example.org"}, nil
}
func (instantServer) LoginSession(context.Context, string, string) (matrix.Session, error) {
	return matrix.Session{}, &matrix.Error{Status: 403, Errcode: "M_FORBIDDEN"}
}
func (instantServer) Logout(context.Context, string) error { return nil }
func (instantServer) UsernameAvailable(context.Context, string) (matrix.Availability, error) {
	return matrix.Available, nil
}

type discard struct{}

func (discard) Write(report.Row) error                          { return nil }
func (discard) Deliver(roster.User, string, string, bool) error { return nil }

// BenchmarkRun is provision's own work per user, without the network: journal
// lookup, password, intent (fsynced, group-committed), outcome (the same), handoff
// and report hooks, roster order. ns/op, B/op and allocs/op are per user; the HTTP
// exchange is matrix's BenchmarkRegister, password generation password's
// BenchmarkGenerate.
func BenchmarkRun(b *testing.B) {
	for _, conc := range []int{1, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			jr, err := journal.Open(filepath.Join(b.TempDir(), "journal"), journal.DeriveKey([]byte(secret)), journal.Options{Homeserver: "https://example.org", SyncWindow: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer jr.Close()
			r := &Runner{
				Server: instantServer{}, Secret: []byte(secret), Passwords: &counter{},
				Journal: jr, Handoff: discard{}, Sink: discard{},
				Opts: Options{Concurrency: conc, ServerName: "example.org"},
			}
			b.ReportAllocs()
			b.ResetTimer()
			sum, err := r.Run(context.Background(), func(yield func(roster.User) error) error {
				for i := range b.N {
					if err := yield(roster.User{Line: i + 2, Localpart: fmt.Sprintf("user%07d", i)}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil || sum.Counts[report.Created] != b.N {
				b.Fatalf("run: %v, %v", err, sum)
			}
		})
	}
}
