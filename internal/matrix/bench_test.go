package matrix_test

import (
	"strconv"
	"testing"

	"github.com/provision-matrix/provision/internal/matrix"
	"github.com/provision-matrix/provision/internal/matrixtest"
)

// BenchmarkRegister measures the client's cost of one shared-secret
// registration (nonce, MAC, POST) against the fake over loopback, for both
// dialects (Dendrite adds the logout of its unwanted session).
func BenchmarkRegister(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.String(), func(b *testing.B) {
			srv := matrixtest.NewServer(b, matrixtest.Options{Dialect: d, SharedSecret: testSecret})
			c, err := matrix.NewClient(srv.URL(), srv.Client())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				reg := matrix.Registration{Localpart: "user" + strconv.Itoa(i), Password: testPassword}
				if _, err := c.RegisterSharedSecret(b.Context(), []byte(testSecret), reg); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
