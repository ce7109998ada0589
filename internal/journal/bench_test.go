package journal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkIntentParallel measures group commit: 64 goroutines (on two cores) append
// intents at once. It reports appends per second and fsyncs per append.
func BenchmarkIntentParallel(b *testing.B) {
	for _, bc := range []struct {
		name   string
		window time.Duration
	}{
		{"window=default", 0},
		{"window=none", -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			j, err := Open(filepath.Join(b.TempDir(), "journal"), testKey, Options{Homeserver: hs, SyncWindow: bc.window})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			var n atomic.Int64
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					lp := "user" + strconv.FormatInt(n.Add(1), 10)
					if err := j.Intent(lp, "@"+lp+":example.org", "a-generated-password-24c"); err != nil {
						b.Error(err)
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
			b.ReportMetric(float64(j.syncs.Load())/float64(b.N), "fsyncs/append")
		})
	}
}

// BenchmarkIntentSerial is one caller at a time: the latency of one durable append.
func BenchmarkIntentSerial(b *testing.B) {
	j, err := Open(filepath.Join(b.TempDir(), "journal"), testKey, Options{Homeserver: hs, SyncWindow: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	for i := 0; b.Loop(); i++ {
		lp := "user" + strconv.Itoa(i)
		if err := j.Intent(lp, "@"+lp+":example.org", "a-generated-password-24c"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplay measures reopening a journal of 10,000 users (intent and outcome
// each), and the memory the replayed state keeps per user.
func BenchmarkReplay(b *testing.B) {
	const users = 10000
	c := newCodec(testKey)
	var recs []byte
	for i := range users {
		lp := fmt.Sprintf("user%05d", i)
		recs = c.appendRecord(recs, record{kind: kindIntent, seq: uint64(2*i + 1), localpart: lp, userID: "@" + lp + ":example.org", password: "a-generated-password-24c"})
		recs = c.appendRecord(recs, record{kind: kindOutcome, seq: uint64(2*i + 2), localpart: lp, status: "created"})
	}
	path := filepath.Join(b.TempDir(), "journal")
	if err := os.WriteFile(path, append(c.header(hs), recs...), 0o600); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	st, err := c.replay(bytes.NewReader(recs), 0, int64(len(recs)))
	if err != nil || len(st.entries) != users {
		b.Fatalf("replay: %v, %d entries", err, len(st.entries))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / users
	runtime.KeepAlive(st)
	runtime.KeepAlive(recs) // else it is freed during the measurement

	b.SetBytes(int64(len(recs)))
	for b.Loop() {
		j, err := Open(path, testKey, Options{Homeserver: hs})
		if err != nil {
			b.Fatal(err)
		}
		if j.Len() != users {
			b.Fatalf("Len = %d", j.Len())
		}
		j.Close()
	}
	b.ReportMetric(perEntry, "heap-B/user")
	b.ReportMetric(float64(len(recs))/users, "file-B/user")
}
