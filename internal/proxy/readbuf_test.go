package proxy

import (
	"bytes"
	"io"
	"testing"
)

// piecesReader returns its data in pieces of the sizes given, cycled.
type piecesReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *piecesReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), r.sizes[r.i%len(r.sizes)])
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// relayAll runs relayStream's read loop (readBuf and sseCheck.whole) over
// stream read in the given pieces and returns what it let through.
func relayAll(stream []byte, sizes []int) (passed []byte, bad, done bool) {
	var sb streamBufs
	rb := readBuf{small: sb.small[:]}
	defer rb.release()
	var s sseCheck
	r := &piecesReader{data: stream, sizes: sizes}
	for {
		n, err := r.Read(rb.next())
		data := rb.data(n)
		k, malformed := s.whole(data, err == io.EOF)
		passed = append(passed, s.closeFinal(data[:k])...)
		rb.keep(data, k)
		if malformed {
			return passed, true, s.done
		}
		if err != nil {
			return passed, false, s.done
		}
	}
}

// The relay's in-place read loop lets through what the check fed whole
// does, however the reads cut the stream, through the small buffer's
// switch to the big one and an event that grows it.
func FuzzReadBufMatchesFeed(f *testing.F) {
	big := append(append([]byte("data: {\"a\":\""), bytes.Repeat([]byte("z"), 70<<10)...), "\"}\n\ndata: [DONE]\n\n"...)
	for _, seed := range []string{
		"data: {\"a\":1}\n\ndata: [DONE]\n\n",
		"data: {}\r\n\r\ndata: [DONE]\r\r",
		": c\n\nid: 1\ndata: {\"a\":\ndata: 2}\n\n",
		"\x00\xffnot json {{{ <html>garbage</html>\n",
		string(big),
	} {
		f.Add([]byte(seed), uint16(3), uint16(5000))
	}
	f.Fuzz(func(t *testing.T, stream []byte, s1, s2 uint16) {
		whole, wbad, wdone := feedAll(stream)
		sizes := []int{int(s1)%40000 + 1, int(s2)%40000 + 1}
		got, bad, done := relayAll(stream, sizes)
		if !bytes.Equal(whole, got) || wbad != bad || wdone != done {
			t.Fatalf("fed whole: %d bytes bad=%v done=%v; relayed in %v pieces: %d bytes bad=%v done=%v", len(whole), wbad, wdone, sizes, len(got), bad, done)
		}
	})
}
