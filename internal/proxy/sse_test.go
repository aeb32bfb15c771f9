package proxy

import (
	"bytes"
	"strings"
	"testing"
)

// feedAll feeds stream to a fresh check in pieces cut at the given
// offsets and returns what it let through and whether it found a
// malformed event.
func feedAll(stream []byte, cuts ...int) (passed []byte, bad bool, done bool) {
	var s sseCheck
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		c = min(max(c, prev), len(stream))
		out, b := s.feed(stream[prev:c], c == len(stream))
		passed = append(passed, out...)
		if b {
			return passed, true, s.done
		}
		prev = c
	}
	return passed, false, s.done
}

func TestSSECheck(t *testing.T) {
	for _, tc := range []struct {
		name, in, passed string
		bad, done        bool
	}{
		{"whole", "data: {\"a\":1}\n\ndata: [DONE]\n\n", "data: {\"a\":1}\n\ndata: [DONE]\n\n", false, true},
		{"no done", "data: {\"a\":1}\n\n", "data: {\"a\":1}\n\n", false, false},
		{"crlf", "data: {}\r\n\r\ndata: [DONE]\r\n\r\n", "data: {}\r\n\r\ndata: [DONE]\r\n\r\n", false, true},
		{"comments and fields", ": hi\n\nid: 1\nevent: x\nretry: 5\n\ndata:{}\n\n", ": hi\n\nid: 1\nevent: x\nretry: 5\n\ndata:{}\n\n", false, false},
		{"multi-line data", "data: {\"a\":\ndata: 2}\n\n", "data: {\"a\":\ndata: 2}\n\n", false, false},
		{"cut json", "data: {}\n\ndata: {\"a\":\n\n", "data: {}\n\n", true, false},
		{"not an object", "data: \"x\"\n\n", "", true, false},
		{"empty data", "data:\n\n", "", true, false},
		{"junk line", "data: {}\n\n<html>\n\n", "data: {}\n\n", true, false},
		{"unfinished at eof", "data: {}\n\ndata: {\"a\"", "data: {}\n\n", true, false},
		{"done without blank line", "data: {}\n\ndata: [DONE]", "data: {}\n\ndata: [DONE]\n\n", false, true},
		{"done with one line end", "data: {}\n\ndata: [DONE]\r\n", "data: {}\n\ndata: [DONE]\r\n\n", false, true},
		{"comment at eof", "data: {}\n\n: ping", "data: {}\n\n: ping\n\n", false, false},
		{"after done unchecked", "data: [DONE]\n\ngarbage", "data: [DONE]\n\ngarbage", false, true},
		{"lone cr", "data: {}\r\rdata: {\"a\":\rdata: 2}\r\rdata: [DONE]\r\r", "data: {}\r\rdata: {\"a\":\rdata: 2}\r\rdata: [DONE]\r\r", false, true},
		{"cr then crlf", ": c\r\r\ndata: {}\r\r\n", ": c\r\r\ndata: {}\r\r\n", false, false},
		{"cut json, lone cr", "data: {}\r\rdata: {\"a\":\r\r", "data: {}\r\r", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			for cut := 0; cut <= len(in); cut++ { // every split into two reads
				passed, bad, done := feedAll(in, cut)
				if string(passed) != tc.passed || bad != tc.bad || done != tc.done {
					t.Fatalf("cut at %d: passed %q bad %v done %v; want %q %v %v", cut, passed, bad, done, tc.passed, tc.bad, tc.done)
				}
			}
		})
	}
}

// An event whose last line end is a lone \r is let through by the read
// that brings it, not held for the next (which may be long in coming: the
// next token); a \n that then starts the next read is the rest of a \r\n
// and passes as it is, ending no event of its own.
func TestSSECheckLetsGoAnEventEndedByALoneCR(t *testing.T) {
	for _, tc := range []struct{ first, next string }{
		{"data: {\"a\":1}\r\r", "data: [DONE]\r\r"},
		{"data: {\"a\":1}\n\r", "\ndata: [DONE]\n\n"},
		{"data: {\"a\":1}\r\n\r", "\ndata: [DONE]\r\n\r\n"},
		{": keep-alive\r\r", "\n"},
	} {
		var s sseCheck
		out, bad := s.feed([]byte(tc.first), false)
		if string(out) != tc.first || bad {
			t.Fatalf("%q: let through %q (bad %v) before the next read, want all of it", tc.first, out, bad)
		}
		out, bad = s.feed([]byte(tc.next), true)
		if string(out) != tc.next || bad {
			t.Fatalf("%q then %q: let through %q (bad %v), want all of it", tc.first, tc.next, out, bad)
		}
	}
}

// lineEnd finds the byte bytes.IndexAny(p, "\r\n") finds, for every line
// end a stream may use (\n, \r\n, a lone \r), mixed, at either end and
// absent, at every length and offset up to 300 bytes (past IndexAny's and
// IndexByte's short-input paths).
func TestLineEndIsIndexAny(t *testing.T) {
	for _, ends := range []string{"\n", "\r\n", "\r", "\n\r", "\r\r\n", ""} {
		for n := 0; n <= 300; n++ {
			for _, at := range []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, n} {
				if at > n {
					continue
				}
				p := []byte(strings.Repeat("x", at) + ends + strings.Repeat("y", n-at))
				if got, want := lineEnd(p), bytes.IndexAny(p, "\r\n"); got != want {
					t.Fatalf("%q: lineEnd %d, IndexAny %d", p, got, want)
				}
			}
		}
	}
}

// An event over maxEvent is refused before the check holds more.
func TestSSECheckBoundsAnEvent(t *testing.T) {
	big := "data: {\"a\":\"" + strings.Repeat("x", 2*maxEvent) + "\"}\n\n"
	var s sseCheck
	var bad bool
	for i := 0; i < len(big) && !bad; i += 32 << 10 {
		_, bad = s.feed([]byte(big[i:min(i+32<<10, len(big))]), false)
	}
	if !bad || len(s.pending) > maxEvent+32<<10 {
		t.Fatalf("bad %v, held %d bytes", bad, len(s.pending))
	}
}

// FuzzSSECheck: however the stream is cut into reads, the check lets the
// same bytes through with the same verdict, and a stream it accepts whole
// passes byte for byte (with the line ends of a final event the stream
// ended inside).
func FuzzSSECheck(f *testing.F) {
	for _, seed := range []string{
		"data: {\"a\":1}\n\ndata: [DONE]\n\n",
		"data: {}\r\n\r\ndata: [DONE]\r\r",
		": c\n\nid: 1\ndata: {\"a\":\ndata: 2}\n\n",
		"data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"he\"\n\nevent: ???\ndata: {unterminated\n\nretry: -1\n\n",
		"\x00\xffnot json {{{ <html>garbage</html>\n",
		"data: [DONE]",
	} {
		f.Add([]byte(seed), uint16(3), uint16(9))
	}
	f.Fuzz(func(t *testing.T, stream []byte, c1, c2 uint16) {
		whole, wbad, wdone := feedAll(stream)
		cuts := []int{int(c1) % (len(stream) + 1), int(c2) % (len(stream) + 1)}
		if cuts[0] > cuts[1] {
			cuts[0], cuts[1] = cuts[1], cuts[0]
		}
		split, sbad, sdone := feedAll(stream, cuts...)
		if !bytes.Equal(whole, split) || wbad != sbad || wdone != sdone {
			t.Fatalf("whole: %q %v %v; cut at %v: %q %v %v", whole, wbad, wdone, cuts, split, sbad, sdone)
		}
		if added, ok := bytes.CutPrefix(whole, stream); !wbad && len(added) > 0 {
			// A stream that ends inside its last event gets the line ends
			// the event lacked (terminate), and nothing else.
			if !ok || string(added) != "\n" && string(added) != "\n\n" {
				t.Fatalf("accepted stream changed: %q -> %q", stream, whole)
			}
			whole = whole[:len(stream)]
		}
		if !wbad && !bytes.Equal(whole, stream) {
			t.Fatalf("accepted stream changed: %q -> %q", stream, whole)
		}
		if !bytes.HasPrefix(stream, whole) {
			t.Fatalf("passed %q is not a prefix of %q", whole, stream)
		}
	})
}

// BenchmarkSSECheck measures the check on a typical 64-token stream read
// a few events at a time.
func BenchmarkSSECheck(b *testing.B) {
	var sb strings.Builder
	for i := 0; i < 64; i++ {
		sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}` + "\n\n")
	}
	sb.WriteString("data: [DONE]\n\n")
	stream := []byte(sb.String())
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		var s sseCheck
		for i := 0; i < len(stream); i += 500 {
			s.feed(stream[i:min(i+500, len(stream))], i+500 >= len(stream))
		}
	}
}
