package proxy

import (
	"bytes"
	"io"
	"strings"
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
	// Reads that fill the small buffer, then the mid one, exactly.
	f.Add(big, uint16(1<<10), uint16(4<<10))
	f.Add([]byte("data: {\"a\":1}\n\n"+strings.Repeat("data: {\"b\":\""+strings.Repeat("y", 300)+"\"}\n\n", 40)+"data: [DONE]\n\n"), uint16(1<<10), uint16(4<<10))
	f.Fuzz(func(t *testing.T, stream []byte, s1, s2 uint16) {
		whole, wbad, wdone := feedAll(stream)
		sizes := []int{int(s1)%40000 + 1, int(s2)%40000 + 1}
		got, bad, done := relayAll(stream, sizes)
		if !bytes.Equal(whole, got) || wbad != bad || wdone != done {
			t.Fatalf("fed whole: %d bytes bad=%v done=%v; relayed in %v pieces: %d bytes bad=%v done=%v", len(whole), wbad, wdone, sizes, len(got), bad, done)
		}
	})
}

// A stream read an event at a time stays in its 1 KiB small buffer; a
// read that fills it moves it to the 4 KiB mid one, and a read that fills
// that to the 32 KiB big one, which gives the mid one back.
func TestReadBufTiers(t *testing.T) {
	var sb streamBufs
	rb := readBuf{small: sb.small[:]}
	defer rb.release()
	var s sseCheck
	ev := []byte("data: {\"a\":\"" + strings.Repeat("x", 200) + "\"}\n\n")
	read := func(p []byte) {
		t.Helper()
		buf := rb.next()
		n := copy(buf, p)
		if n != len(p) {
			t.Fatalf("read of %d bytes got room for %d", len(p), len(buf))
		}
		data := rb.data(n)
		k, bad := s.whole(data, false)
		if bad {
			t.Fatal("malformed")
		}
		rb.keep(data, k)
	}
	for range 20 {
		read(ev)
	}
	if len(rb.cur()) != smallRead || rb.mid != nil || rb.big != nil {
		t.Fatalf("after single events: buffer %d bytes, mid %v, big %v; want the %d-byte small one", len(rb.cur()), rb.mid != nil, rb.big != nil, smallRead)
	}
	read(bytes.Repeat(ev, 10)[:smallRead])
	if len(rb.cur()) != midRead || rb.big != nil {
		t.Fatalf("after a read that filled the small buffer: %d bytes, want %d", len(rb.cur()), midRead)
	}
	rest := bytes.Repeat(ev, 40)[smallRead:]
	read(rest[:midRead-rb.carry])
	if len(rb.cur()) != bigRead || rb.mid != nil {
		t.Fatalf("after a read that filled the mid buffer: %d bytes, mid held %v; want %d, mid pooled", len(rb.cur()), rb.mid != nil, bigRead)
	}
}
