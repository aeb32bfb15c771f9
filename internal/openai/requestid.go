package openai

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
)

// RequestIDLen is the length of a request id the gateway makes.
const RequestIDLen = 32

// NewRequestID is a new request id (X-Request-Id, OpenAI's x-request-id):
// 128 random bits as 32 lowercase hex digits, low byte first. Every answer
// of the gateway carries one, those of the pipeline and those the listener
// makes before a request reaches it (internal/netguard), so the format is
// made here, once. One allocation: the string.
func NewRequestID() string {
	// The two words written straight into the text (hexWord), with no
	// call between: this runs on every request.
	var text [RequestIDLen]byte
	hexWord(text[:16], rand.Uint64())
	hexWord(text[16:], rand.Uint64())
	return string(text[:])
}

// RequestIDs makes request ids (NewRequestID's) from a block of
// idsPerBlock ids' text allocated at once, for a caller that makes one
// after another (the inference chain's exchange, kept by its
// connection): the 32-byte string of each id (~210 of the ~490
// instructions NewRequestID costs, by callgrind) becomes a share of one
// allocation a block, ~120 instructions fewer per id
// (docs/BENCHMARKS.md §9 Step 9c). The ids are strings of the block
// (strings.Builder's, never written again once taken), so one still held
// keeps its block's 512 bytes. The zero value is ready; a RequestIDs must
// not be copied once used.
type RequestIDs struct{ block strings.Builder }

// idsPerBlock: a block's ids, 512 bytes of text.
const idsPerBlock = 16

// New is a new request id, as NewRequestID's.
func (ids *RequestIDs) New() string {
	if ids.block.Cap()-ids.block.Len() < RequestIDLen {
		ids.block = strings.Builder{} // its ids keep the old block
		ids.block.Grow(idsPerBlock * RequestIDLen)
	}
	var text [RequestIDLen]byte
	hexWord(text[:16], rand.Uint64())
	hexWord(text[16:], rand.Uint64())
	ids.block.Write(text[:])
	s := ids.block.String()
	return s[len(s)-RequestIDLen:]
}

// AppendRequestID appends a new request id (NewRequestID) to dst, for an
// answer written as bytes; it allocates only when dst must grow.
func AppendRequestID(dst []byte) []byte {
	var text [RequestIDLen]byte
	hexWord(text[:16], rand.Uint64())
	hexWord(text[16:], rand.Uint64())
	return append(dst, text[:]...)
}

// hexWord writes the 8 bytes of v, low byte first, into dst[:16] as
// lowercase hex digits, each byte's high nibble first: the text of a
// request id. Word operations, four bytes at a time, instead of a loop
// over the bytes (~260 instructions per request id, by callgrind, against
// ~60).
func hexWord(dst []byte, v uint64) {
	_ = dst[15]
	binary.LittleEndian.PutUint64(dst[:8], hexDigits(uint32(v)))
	binary.LittleEndian.PutUint64(dst[8:16], hexDigits(uint32(v>>32)))
}

// hexDigits returns the 4 bytes of v, low byte first, as 8 hex digits:
// the bytes of a little-endian word.
func hexDigits(v uint32) uint64 {
	t := uint64(v)
	t = (t | t<<16) & 0x0000ffff0000ffff
	t = (t | t<<8) & 0x00ff00ff00ff00ff // byte i of v now at byte 2i
	// Each byte's high nibble at byte 2i, its low nibble at byte 2i+1.
	n := (t>>4)&0x000f000f000f000f | (t&0x000f000f000f000f)<<8
	// '0' + n, and 'a'-'0'-10 = 39 more where n > 9 (n+6 carries into bit 4).
	over := (n + 0x0606060606060606) >> 4 & 0x0101010101010101
	return n + 0x3030303030303030 + over*39
}
