package journal

import (
	"bufio"
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// The file format, version 3. Integers are big-endian.
//
//	header:
//	  "provision journal\n"      magic, so `head -1` tells an operator what the file is
//	  u8        version (3; 2 is read, and rewritten as 3 on Open)
//	  u16       length of the homeserver URL
//	  u32       CRC-32C of the bytes above: a header is only taken for one a crash cut
//	            short (and rewritten) when its length is known to be right
//	  [16]      file ID, random; bound into every record so records cannot be moved between journals
//	  ...       homeserver URL
//	  [24]      nonce
//	  [16]      XChaCha20-Poly1305 tag over an empty message, with the bytes above as
//	            associated data: the key check, and the header's authenticity
//	  u32       CRC-32C of everything above, to tell a damaged header from a wrong key
//
//	record, repeated:
//	  u32       body length
//	  u32       CRC-32C of the four length bytes: a trustworthy length is what lets a
//	            torn tail (body cut short) be told from a damaged length in the middle
//	  body:
//	    u8        kind (1 intent, 2 outcome, 3 checkpoint)
//	    u64       sequence number: 1, 2, 3 ... with no gaps
//	    u64       ref, a file offset: for an outcome, the first record of the user's
//	              current chain (the intent holding the password, or the first outcome
//	              when there was no intent), 0 if none; for a checkpoint, where the
//	              session it closes began; 0 for an intent
//	    u16 + ... localpart (empty for a checkpoint)
//	    u16 + ... user ID
//	    u16 + ... status (outcomes)
//	    u16       length of the password slot below: 0, or 24 + password length + 16
//	    [24]      nonce, random per record
//	    [16]      XChaCha20-Poly1305 tag over an empty message, with the file ID and
//	              every body byte before the nonce as associated data
//	    slot:     the password (intents only): a random nonce, then the password sealed
//	              with the file ID and the same body bytes as associated data, and its
//	              tag; or, once the password is no longer owed, as many zero bytes
//	    u8        '\n', so a whole record never ends in a zero byte
//
// Version 2 added ref and the checkpoint. The ref is what lets the journal keep only a
// small index in memory (see index.go): a user's latest record, read back from the
// file, leads to the one holding the password without a scan.
//
// Version 3 moved the password out of the record's tag into its own slot, so that
// the one place a record is ever changed after it is written is that slot: a scrub
// overwrites it with zeros in place once the password is handed off (or superseded),
// and the record still authenticates. In version 2 the password was under the
// record's tag, and stayed in the file for ever. A slot that fails its check is
// damage only if its password is still owed; one that is no longer owed may be a
// scrub a crash cut short, and is zeroed again.
//
// A crash can leave the last records cut short, or, on filesystems that grow the file
// before its data lands, followed or overwritten by zeros. Replay drops a damaged
// record when it is such a torn write: cut short, or damaged only by a run of zeros
// that starts inside it and reaches the end of the file. Any other damage is an error.
//
// Localparts, user IDs and statuses stay readable on purpose: they are in the roster
// and the report anyway, and an operator who lost the secret can still learn from the
// journal which accounts a crashed run touched. The tag authenticates them all the
// same, so nothing in a record can be altered without the key.
const (
	magic        = "provision journal\n"
	version      = 3
	version2     = 2
	fileIDSize   = 16
	frameSize    = 8
	maxField     = 1<<16 - 1
	kindIntent   = 1
	kindOutcome  = 2
	kindCheck    = 3 // a checkpoint
	headerAD     = "provision journal v2 header\x00"
	recordAD     = "provision journal v2 record\x00"
	slotAD       = "provision journal v3 password\x00"
	nonceSize    = chacha20poly1305.NonceSizeX
	tagSize      = chacha20poly1305.Overhead
	endMarker    = '\n'
	metaFixed    = 1 + 8 + 8                                 // kind, seq, ref
	minBody      = metaFixed + 3*2 + nonceSize + tagSize + 1 // version 2; version 3 adds 2
	slotOverhead = nonceSize + tagSize
	maxPassword  = maxField - slotOverhead // the slot's length is a u16
	maxBody      = 1 << 20
	prefixLen    = len(magic) + 1 + 2 + 4
	maxHeaderLen = prefixLen + fileIDSize + maxField + nonceSize + tagSize + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is one intent, outcome or checkpoint, as written.
type record struct {
	kind      byte
	seq       uint64
	ref       int64
	localpart string
	userID    string
	status    string
	password  string
	slot      slotState
}

// slotState is what a record's password slot holds.
type slotState uint8

const (
	slotNone     slotState = iota // no password (or a version 2 record)
	slotSealed                    // a password, authentic
	slotScrubbed                  // zeros: the password was no longer owed
	slotDamaged                   // neither: damage, or a scrub cut short
)

// view is a record opened in place: its fields point into the buffer it was read
// into, so replaying a long journal allocates nothing per record.
type view struct {
	kind      byte
	seq       uint64
	ref       int64
	localpart []byte
	userID    []byte
	status    []byte
	password  []byte // decrypted into the caller's scratch buffer
	slot      slotState
	slotOff   int // where the slot starts in the body (version 3 intents)
	slotLen   int
}

func (v *view) record() record {
	return record{kind: v.kind, seq: v.seq, ref: v.ref, localpart: string(v.localpart),
		userID: string(v.userID), status: string(v.status), password: string(v.password), slot: v.slot}
}

// codec seals and opens one journal's header and records.
type codec struct {
	aead    cipher.AEAD
	fileID  [fileIDSize]byte
	version byte
	// blind opens records without their key, trusting them unchecked, and gives each
	// sealed password as unknownPassword: enough to tell which users are owed one.
	blind bool
}

// unknownPassword stands for a password a blind codec cannot read.
const unknownPassword = "\x00sealed"

func newCodec(key [32]byte) *codec {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic("journal: " + err.Error()) // only for a wrong key size, which [32]byte rules out
	}
	return &codec{aead: aead, version: version}
}

// header returns a new header for homeserver, under c's file ID.
func (c *codec) header(homeserver string) []byte {
	b := make([]byte, 0, prefixLen+fileIDSize+len(homeserver)+nonceSize+tagSize+4)
	b = append(b, magic...)
	b = append(b, c.version)
	b = binary.BigEndian.AppendUint16(b, uint16(len(homeserver)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	b = append(b, c.fileID[:]...)
	b = append(b, homeserver...)
	ad := append([]byte(headerAD), b...)
	var nonce [nonceSize]byte
	rand.Read(nonce[:])
	b = append(b, nonce[:]...)
	b = c.aead.Seal(b, nonce[:], nil, ad)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var (
	errShortHeader = errors.New("header cut short")
	errNotJournal  = ErrNotJournal
	errHeaderCRC   = errors.New("header checksum mismatch")
)

// parsedHeader is a header whose checksums are right but whose key check is still to do.
type parsedHeader struct {
	version    byte
	fileID     [fileIDSize]byte
	homeserver string
	sealed     []byte // the bytes the tag covers
	nonce      []byte
	tag        []byte
	len        int
}

// parseHeader reads the header at the start of b. errShortHeader means b is a prefix
// of a header, as a crash while creating the journal leaves it.
func parseHeader(b []byte) (parsedHeader, error) {
	var h parsedHeader
	if len(b) < len(magic) {
		if bytes.HasPrefix([]byte(magic), b) {
			return h, errShortHeader
		}
		return h, errNotJournal
	}
	if string(b[:len(magic)]) != magic {
		return h, errNotJournal
	}
	if len(b) < prefixLen {
		return h, errShortHeader
	}
	if crc32.Checksum(b[:prefixLen-4], castagnoli) != binary.BigEndian.Uint32(b[prefixLen-4:]) {
		return h, errHeaderCRC
	}
	if v := b[len(magic)]; v != version && v != version2 {
		return h, fmt.Errorf("%w: version %d (this provision reads versions %d and %d)", ErrUnsupportedVersion, v, version2, version)
	}
	h.version = b[len(magic)]
	n := int(binary.BigEndian.Uint16(b[len(magic)+1:]))
	p := prefixLen
	if len(b) < p+fileIDSize+n+nonceSize+tagSize+4 {
		return h, errShortHeader
	}
	copy(h.fileID[:], b[p:])
	p += fileIDSize
	h.homeserver = string(b[p : p+n])
	p += n
	h.sealed = b[:p]
	h.nonce = b[p : p+nonceSize]
	p += nonceSize
	h.tag = b[p : p+tagSize]
	p += tagSize
	if crc32.Checksum(b[:p], castagnoli) != binary.BigEndian.Uint32(b[p:]) {
		return h, errHeaderCRC
	}
	h.len = p + 4
	return h, nil
}

// checkKey reports whether c's key is the one h was written with.
func (c *codec) checkKey(h parsedHeader) bool {
	ad := append([]byte(headerAD), h.sealed...)
	_, err := c.aead.Open(nil, h.nonce, h.tag, ad)
	return err == nil
}

// appendRecord appends r, framed and sealed, to dst.
func (c *codec) appendRecord(dst []byte, r record) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameSize)...)
	body := len(dst)
	dst = append(dst, r.kind)
	dst = binary.BigEndian.AppendUint64(dst, r.seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.ref))
	for _, s := range []string{r.localpart, r.userID, r.status} {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
		dst = append(dst, s...)
	}
	if c.version == version2 {
		meta := len(dst)
		var adBuf [256]byte
		ad := append(adBuf[:0], recordAD...)
		ad = append(ad, c.fileID[:]...)
		ad = append(ad, dst[body:meta]...)
		var nonce [nonceSize]byte
		rand.Read(nonce[:])
		dst = append(dst, nonce[:]...)
		dst = c.aead.Seal(dst, nonce[:], []byte(r.password), ad)
		dst = append(dst, endMarker)
		binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-body))
		binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start:start+4], castagnoli))
		return dst
	}
	slotLen := 0
	if r.password != "" {
		slotLen = slotOverhead + len(r.password)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(slotLen))
	meta := len(dst)
	var adBuf [256]byte
	ad := append(adBuf[:0], recordAD...)
	ad = append(ad, c.fileID[:]...)
	ad = append(ad, dst[body:meta]...)
	var nonce [nonceSize]byte
	rand.Read(nonce[:])
	dst = append(dst, nonce[:]...)
	dst = c.aead.Seal(dst, nonce[:], nil, ad)
	if slotLen > 0 {
		ad = append(ad[:0], slotAD...)
		ad = append(ad, c.fileID[:]...)
		ad = append(ad, dst[body:meta]...)
		rand.Read(nonce[:])
		dst = append(dst, nonce[:]...)
		dst = c.aead.Seal(dst, nonce[:], []byte(r.password), ad)
	}
	dst = append(dst, endMarker)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-body))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start:start+4], castagnoli))
	return dst
}

var errBadRecord = errors.New("record fails authentication")

// minExtra is what a record body of c's version takes beyond minBody.
func (c *codec) minExtra() int {
	if c.version == version2 {
		return 0
	}
	return 2
}

// openRecord decodes and authenticates one record body.
func (c *codec) openRecord(body []byte) (record, error) {
	var v view
	if _, err := c.open(body, &v, nil); err != nil {
		return record{}, err
	}
	return v.record(), nil
}

// open decodes and authenticates one record body into v, whose fields then point
// into body, and the password into scratch (grown as needed and returned).
func (c *codec) open(body []byte, v *view, scratch []byte) ([]byte, error) {
	if len(body) < minBody {
		return scratch, errBadRecord
	}
	v.kind = body[0]
	v.seq = binary.BigEndian.Uint64(body[1:])
	v.ref = int64(binary.BigEndian.Uint64(body[9:]))
	p := metaFixed
	var fields [3][]byte
	for i := range fields {
		if len(body) < p+2 {
			return scratch, errBadRecord
		}
		n := int(binary.BigEndian.Uint16(body[p:]))
		p += 2
		if len(body) < p+n {
			return scratch, errBadRecord
		}
		fields[i] = body[p : p+n : p+n]
		p += n
	}
	slotLen := 0
	if c.version != version2 {
		if len(body) < p+2 {
			return scratch, errBadRecord
		}
		slotLen = int(binary.BigEndian.Uint16(body[p:]))
		p += 2
		if slotLen != 0 && slotLen <= slotOverhead {
			return scratch, errBadRecord
		}
	}
	if len(body) < p+nonceSize+tagSize+1 || body[len(body)-1] != endMarker {
		return scratch, errBadRecord
	}
	body = body[:len(body)-1]
	if c.version != version2 && len(body) != p+nonceSize+tagSize+slotLen {
		return scratch, errBadRecord
	}
	// The associated data is built in a buffer on the stack for everyday lengths: this
	// runs once per record on replay.
	var adBuf [256]byte
	ad := append(adBuf[:0], recordAD...)
	ad = append(ad, c.fileID[:]...)
	ad = append(ad, body[:p]...)
	var pw []byte
	v.slot, v.slotOff, v.slotLen = slotNone, 0, 0
	switch {
	case c.blind:
		if c.version == version2 && len(body) > p+nonceSize+tagSize {
			pw, v.slot = append(scratch[:0], unknownPassword...), slotSealed
		}
	case c.version == version2:
		var err error
		if pw, err = c.aead.Open(scratch[:0], body[p:p+nonceSize], body[p+nonceSize:], ad); err != nil {
			return scratch, errBadRecord
		}
		if len(pw) > 0 {
			v.slot = slotSealed
		}
	default:
		if _, err := c.aead.Open(nil, body[p:p+nonceSize], body[p+nonceSize:p+nonceSize+tagSize], ad); err != nil {
			return scratch, errBadRecord
		}
	}
	if c.version != version2 && slotLen > 0 {
		v.slotOff, v.slotLen = p+nonceSize+tagSize, slotLen
		slot := body[v.slotOff:]
		switch {
		case lastNonZero(slot) == 0:
			v.slot = slotScrubbed
		case c.blind:
			pw, v.slot = append(scratch[:0], unknownPassword...), slotSealed
		default:
			ad = append(ad[:0], slotAD...)
			ad = append(ad, c.fileID[:]...)
			ad = append(ad, body[:p]...)
			var err error
			pw, err = c.aead.Open(scratch[:0], slot[:nonceSize], slot[nonceSize:], ad)
			v.slot = slotSealed
			if err != nil {
				// Judged by the caller: damage if the password is still owed.
				pw, v.slot = scratch[:0], slotDamaged
			}
		}
	}
	switch {
	case v.kind != kindIntent && v.kind != kindOutcome && v.kind != kindCheck:
		// Authentic yet unknown: written by a newer format we do not understand.
		return pw, fmt.Errorf("unknown record kind %d", v.kind)
	case v.kind != kindCheck && len(fields[0]) == 0:
		return pw, errors.New("record without a localpart")
	case v.kind != kindIntent && slotLen != 0:
		return pw, errors.New("a password in a record that is not an intent")
	case v.ref < 0:
		return pw, fmt.Errorf("record refers to offset %d", v.ref)
	}
	v.localpart, v.userID, v.status, v.password = fields[0], fields[1], fields[2], pw
	return pw, nil
}

// replayed is what reading a journal's records gave.
type replayed struct {
	seq  uint64 // the last record's sequence number
	end  int64  // offset just past the last whole record
	torn bool   // bytes after end are a torn write, to be cut off
}

// replay reads the records from r, which holds the size-start bytes of the journal
// that follow its header at offset start, and calls apply with each authentic record
// and its offset, in order, stopping at its first error; v is valid only during the
// call. A damaged record is a
// *CorruptError, except a torn write at the end, which is dropped: it was never
// fsynced, so no request that depends on it ever left the process.
func (c *codec) replay(r io.Reader, start, size int64, apply func(v *view, off int64) error) (replayed, error) {
	st := replayed{end: start}
	br := bufio.NewReaderSize(r, 64<<10)
	buf := make([]byte, frameSize, 512)
	var scratch []byte
	var v view
	for off := start; off < size; {
		rem := size - off
		if rem < frameSize {
			st.torn = true
			return st, nil
		}
		buf = buf[:frameSize]
		if _, err := io.ReadFull(br, buf); err != nil {
			return st, fmt.Errorf("read journal at offset %d: %w", off, err)
		}
		n := binary.BigEndian.Uint32(buf)
		if crc32.Checksum(buf[:4], castagnoli) != binary.BigEndian.Uint32(buf[4:]) {
			return st, tornOrCorrupt(&st, off, off+frameSize, size, buf, br, "record length checksum mismatch")
		}
		if n < minBody+uint32(c.minExtra()) || n > maxBody {
			return st, &CorruptError{Offset: off, Reason: fmt.Sprintf("impossible record length %d", n)}
		}
		if int64(n) > rem-frameSize {
			st.torn = true
			return st, nil
		}
		buf = slices.Grow(buf, int(n))[:frameSize+int(n)]
		if _, err := io.ReadFull(br, buf[frameSize:]); err != nil {
			return st, fmt.Errorf("read journal at offset %d: %w", off, err)
		}
		end := off + frameSize + int64(n)
		var err error
		scratch, err = c.open(buf[frameSize:], &v, scratch)
		if errors.Is(err, errBadRecord) {
			return st, tornOrCorrupt(&st, off, end, size, buf, br, err.Error())
		}
		if err != nil {
			return st, &CorruptError{Offset: off, Reason: err.Error()}
		}
		if v.seq != st.seq+1 {
			return st, &CorruptError{Offset: off, Reason: fmt.Sprintf("record %d follows record %d", v.seq, st.seq)}
		}
		if (v.kind == kindIntent && v.ref != 0) || (v.kind == kindOutcome && v.ref >= off && v.ref != 0) || v.ref > off {
			return st, &CorruptError{Offset: off, Reason: fmt.Sprintf("record refers to offset %d", v.ref)}
		}
		st.seq = v.seq
		if err := apply(&v, off); err != nil {
			return st, err
		}
		off = end
		st.end = off
	}
	return st, nil
}

// tornOrCorrupt judges the damaged record at off, which would end at limit: it is a
// torn write if from somewhere before limit to the end of the file there are only
// zeros. head holds the bytes read from off so far, r the rest of the file.
func tornOrCorrupt(st *replayed, off, limit, size int64, head []byte, r io.Reader, reason string) error {
	z := off + int64(lastNonZero(head)) // just past the last non-zero byte
	pos := off + int64(len(head))
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if i := lastNonZero(chunk[:n]); i > 0 {
			z = pos + int64(i)
		}
		pos += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read journal at offset %d: %w", pos, err)
		}
	}
	if z < size && z < limit {
		st.torn = true
		return nil
	}
	return &CorruptError{Offset: off, Reason: reason}
}

// lastNonZero returns the index just past the last non-zero byte of b, or 0.
func lastNonZero(b []byte) int {
	for i := len(b); i > 0; i-- {
		if b[i-1] != 0 {
			return i
		}
	}
	return 0
}
