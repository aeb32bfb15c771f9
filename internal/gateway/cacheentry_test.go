package gateway

import (
	"strings"
	"testing"
	"unsafe"
)

// A backend's header values are slices of one string holding its whole
// header block (h1client's readHead); a cached entry keeping its
// Content-Type as it came kept the block alive for as long as it was
// cached, uncounted (18 MB of 200,000 entries' heap through the binary).
func TestCachedEntryKeepsNoneOfTheHeaderBlock(t *testing.T) {
	for _, ct := range []string{"application/json", "text/event-stream; charset=utf-8", "application/json; profile=x"} {
		block := "Content-Type: " + ct + "\r\n" + strings.Repeat("X-Pad: 0123456789\r\n", 200)
		value := block[len("Content-Type: ") : len("Content-Type: ")+len(ct)]
		raw := []byte(`{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}`)
		if strings.HasPrefix(ct, "text/event-stream") {
			raw = []byte("data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
		}
		e := entryFrom(200, value, raw, true)
		if e == nil {
			t.Fatalf("%s: no entry", ct)
		}
		start := uintptr(unsafe.Pointer(unsafe.StringData(block)))
		p := uintptr(unsafe.Pointer(unsafe.StringData(e.ContentType)))
		if e.ContentType != ct || p >= start && p < start+uintptr(len(block)) {
			t.Fatalf("%s: the entry's Content-Type %q points into the %d-byte header block", ct, e.ContentType, len(block))
		}
	}
}
