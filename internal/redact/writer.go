package redact

import (
	"bytes"
	"io"
	"sync"
)

// maxPending bounds how much of an unfinished line a Writer holds back.
const maxPending = 64 << 10

// Writer blanks registered secrets out of what is written through it. It
// works line by line: it holds back an unfinished line until its newline
// arrives, so that a secret split across two Write calls is still caught,
// and passes complete lines on redacted.
//
// The boundary cases: a line that grows past 64 KiB without a newline is
// passed on early, all but a tail long enough to hold the start of a secret
// that the next Write may complete. A secret that contains a newline is not
// reliably caught, since what comes after the newline may not have arrived
// when the line goes out; the secrets this is for (a shared secret, an
// access token) have none.
//
// Call Flush when done, or text after the last newline is never written.
// A Writer is safe for concurrent use.
type Writer struct {
	mu      sync.Mutex
	w       io.Writer
	set     *Set
	pending []byte
}

// NewWriter returns a Writer passing what is written to it on to w, with
// the secrets in s blanked out.
func NewWriter(w io.Writer, s *Set) *Writer {
	return &Writer{w: w, set: s}
}

// Write redacts and passes on every complete line in p, and holds back the
// rest. It returns len(p) when what it passed on was written in full: the
// bytes held back count as written.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(w.pending, p...)
	if i := bytes.LastIndexByte(w.pending, '\n'); i >= 0 {
		if err := w.emit(i + 1); err != nil {
			return 0, err
		}
	}
	if len(w.pending) > maxPending {
		if err := w.emit(w.safePrefix()); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush redacts and passes on everything held back.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.emit(len(w.pending))
}

// emit redacts pending[:n] and writes it, keeping the rest pending.
func (w *Writer) emit(n int) error {
	if n == 0 {
		return nil
	}
	out := w.set.Redact(string(w.pending[:n]))
	rest := copy(w.pending, w.pending[n:])
	w.pending = w.pending[:rest]
	_, err := io.WriteString(w.w, out)
	return err
}

// safePrefix is how much of a long unfinished line can go out now: all but
// a tail that may hold the start of a secret, and not in the middle of a
// secret found whole.
func (w *Writer) safePrefix() int {
	cut := max(len(w.pending)-(w.set.longest()-1), 0)
	for _, sp := range w.set.spans(string(w.pending)) {
		if sp.start < cut && cut < sp.end {
			return sp.start // spans are merged: no other one straddles this
		}
	}
	return cut
}
