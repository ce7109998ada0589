package matrix

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// MaxCAFileSize bounds a --ca-file: a bundle of a few hundred certificates is far
// smaller, and a path such as /dev/zero must not grow memory without bound.
const MaxCAFileSize = 4 << 20

// ErrCAFile is a CA file that cannot be used: unreadable, too large, or with no
// PEM certificate in it.
var ErrCAFile = errors.New("the CA file cannot be used")

// HTTPOptions shape the HTTP client every server request of a run goes through.
type HTTPOptions struct {
	// CAFile is a PEM file of CA certificates trusted in addition to the system's
	// (a private CA); "" = the system's only.
	CAFile string
	// Conns is how many requests may be in flight at once: idle connections are kept
	// for that many, so that a pool of workers reuses its connections.
	Conns int
	// RequestTimeout is the longest one request may take; the client's own overall
	// timeout is set above it so that it never cuts a request shorter.
	RequestTimeout time.Duration
}

// NewHTTPClient is DefaultHTTPClient shaped by o.
func NewHTTPClient(o HTTPOptions) (*http.Client, error) {
	hc := DefaultHTTPClient()
	tr := hc.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, o.Conns+4)
	tr.MaxIdleConns = max(tr.MaxIdleConns, o.Conns+4)
	if o.CAFile != "" {
		pool, err := LoadCAFile(o.CAFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	hc.Timeout = max(hc.Timeout, o.RequestTimeout+10*time.Second)
	return hc, nil
}

// LoadCAFile reads a PEM file of CA certificates (at most MaxCAFileSize bytes) into
// a pool that also holds the system's.
func LoadCAFile(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCAFile, err)
	}
	defer f.Close()
	pem, err := io.ReadAll(io.LimitReader(f, MaxCAFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrCAFile, path, err)
	}
	if len(pem) > MaxCAFileSize {
		return nil, fmt.Errorf("%w: %s is larger than %d MiB, which no CA bundle is", ErrCAFile, path, MaxCAFileSize>>20)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrCAFile, path)
	}
	return pool, nil
}
