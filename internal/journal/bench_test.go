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
// each), and the memory the replayed state keeps per user (at this size mostly the
// index's fixed part; BenchmarkIndex measures a million users).
func BenchmarkReplay(b *testing.B) {
	const users = 10000
	c := newCodec(testKey)
	hdr := c.header(hs)
	recs := bytes.Clone(hdr)
	for i := range users {
		lp := fmt.Sprintf("user%05d", i)
		intent := int64(len(recs))
		recs = c.appendRecord(recs, record{kind: kindIntent, seq: uint64(2*i + 1), localpart: lp, userID: "@" + lp + ":example.org", password: "a-generated-password-24c"})
		recs = c.appendRecord(recs, record{kind: kindOutcome, seq: uint64(2*i + 2), ref: intent, localpart: lp, status: "created"})
	}
	path := filepath.Join(b.TempDir(), "journal")
	if err := os.WriteFile(path, recs, 0o600); err != nil {
		b.Fatal(err)
	}
	recs = recs[len(hdr):]
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	j := &Journal{idx: newIndex()}
	_, err := c.replay(bytes.NewReader(recs), int64(len(hdr)), int64(len(hdr)+len(recs)), func(v *view, off int64) error {
		key, check := j.idx.hashBytes(v.localpart)
		j.note(v.kind, Status(v.status) == StatusCreated, key, check, func() string { return string(v.localpart) }, v.ref, off)
		return nil
	})
	if err != nil || j.idx.len() != users {
		b.Fatalf("replay: %v, %d entries", err, j.idx.len())
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perEntry := float64(after.HeapAlloc-before.HeapAlloc) / users
	runtime.KeepAlive(j)
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

// BenchmarkLookup is a resumed run asking about users created by an earlier one: the
// entry, password included, is read back from the file.
func BenchmarkLookup(b *testing.B) {
	j, err := Open(filepath.Join(b.TempDir(), "journal"), testKey, Options{Homeserver: hs, SyncWindow: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	const users = 1000
	for i := range users {
		lp := "user" + strconv.Itoa(i)
		if err := j.Intent(lp, "@"+lp+":example.org", "a-generated-password-24c"); err != nil {
			b.Fatal(err)
		}
		if err := j.Outcome(lp, "", StatusCreated); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; b.Loop(); i++ {
		if e, ok := j.Lookup("user" + strconv.Itoa(i%users)); !ok || e.Password == "" {
			b.Fatal("lost a user")
		}
	}
}

// BenchmarkIndex fills the index with a million users, as a million-user run does,
// and reports the heap it keeps per user (ns/op is for the million puts).
func BenchmarkIndex(b *testing.B) {
	const users = 1000000
	names := make([]string, users)
	for i := range names {
		names[i] = "user" + strconv.Itoa(i)
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := newIndex()
		for i, name := range names {
			k, c := x.hash(name)
			x.put(k, c, func() string { return name }, int64(i+1), codeIntent)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/users, "heap-B/user")
		runtime.KeepAlive(x)
	}
}
