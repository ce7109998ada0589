package mastest

import (
	"crypto/rand"
	"encoding/binary"
	"maps"
	"slices"
	"strings"
)

// IDs are ULIDs as MAS makes them: 48 bits of milliseconds, then 80 random
// bits, in Crockford base32. Written here (a dozen lines) rather than pulling
// in a ULID module for a test fake; within one millisecond the IDs increase,
// so that listing in ID order is listing in creation order, as tests expect.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func (s *Server) newID() string {
	ms := s.o.Clock().UnixMilli()
	if ms <= s.lastMilli {
		ms = s.lastMilli + 1
	}
	s.lastMilli = ms
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(ms)<<16)
	_, _ = rand.Read(b[6:])
	return encodeULID(b)
}

func encodeULID(b [16]byte) string {
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	out := make([]byte, 26)
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out)
}

// parseULID returns the canonical (uppercase) form of s, or false if it is
// not a ULID, as the ulid crate's parser decides (MAS's UlidPathParam and
// page[after]).
func parseULID(s string) (string, bool) {
	if len(s) != 26 {
		return "", false
	}
	u := strings.ToUpper(s)
	if u[0] > '7' {
		return "", false
	}
	for i := 0; i < len(u); i++ {
		if strings.IndexByte(crockford, u[i]) < 0 {
			return "", false
		}
	}
	return u, true
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
