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

// cutsReader returns data cut at the offsets given (ascending), each read
// also bounded by the room it is given.
type cutsReader struct {
	data []byte
	off  int
	cuts []int
}

func (r *cutsReader) Read(p []byte) (int, error) {
	if r.off == len(r.data) {
		return 0, io.EOF
	}
	end := len(r.data)
	for _, c := range r.cuts {
		if c > r.off && c < end {
			end = c
			break
		}
	}
	n := copy(p, r.data[r.off:end])
	r.off += n
	return n, nil
}

// relayStep is one stream of relayAll's loop, a read at a time, so two
// can be interleaved on one goroutine: a pooled buffer one gives back
// while it still reads from it is the next the other takes.
type relayStep struct {
	rb     readBuf
	sb     streamBufs
	chk    sseCheck
	r      io.Reader
	passed []byte
	end    bool
}

func (s *relayStep) step() {
	if s.rb.small == nil {
		s.rb.small = s.sb.small[:]
	}
	n, err := s.r.Read(s.rb.next())
	data := s.rb.data(n)
	k, bad := s.chk.whole(data, err == io.EOF)
	s.passed = append(s.passed, s.chk.closeFinal(data[:k])...)
	s.rb.keep(data, k)
	if bad || err != nil {
		s.end = true
		s.rb.release()
	}
}

// Every cut of a stream at offsets around the small (1 KiB), mid (4 KiB)
// and big (32 KiB) buffers' sizes, so reads fill each exactly, end an
// event at the switch or cut one across it (a lone \r among them), lets
// through what the check fed the stream whole does; two streams read in
// turn on one goroutine, so a buffer pooled while still in use is
// overwritten by the other.
func TestReadBufCutsAroundTiers(t *testing.T) {
	ev := func(n int, end string) string {
		return "data: {\"a\":\"" + strings.Repeat("y", n) + "\"}" + end
	}
	var small, crs, big strings.Builder
	for i := range 60 {
		small.WriteString(ev(180+i*7%90, "\n\n"))
		crs.WriteString(ev(200+i*13%70, "\r\r"))
		if i%3 == 0 {
			crs.WriteString(": ping\r\n\r\n")
		}
	}
	big.WriteString(ev(100, "\n\n") + ev(40<<10, "\n\n") + ev(3000, "\n\n"))
	for _, tail := range []string{"data: [DONE]\n\n", "data: [DONE]"} {
		for name, body := range map[string]string{"events": small.String(), "lone CR": crs.String(), "big event": big.String()} {
			stream := []byte(body + tail)
			whole, wbad, wdone := feedAll(stream)
			if wbad || !wdone {
				t.Fatalf("%s: the reference check failed the stream", name)
			}
			for _, c1 := range []int{1 << 10, 4 << 10} {
				for d1 := -3; d1 <= 3; d1++ {
					for d2 := -3; d2 <= 3; d2++ {
						// A read that fills 1 KiB, then one that fills 4
						// (from the carry), then 32, each one off or exact.
						cuts := []int{c1 + d1, c1 + d1 + (4 << 10) + d2, c1 + d1 + (4 << 10) + d2 + (32 << 10) + d1}
						other := []int{c1 + d2, c1 + d2 + (4 << 10) + d1}
						a := &relayStep{r: &cutsReader{data: stream, cuts: cuts}}
						b := &relayStep{r: &cutsReader{data: stream, cuts: other}}
						for !a.end || !b.end {
							if !a.end {
								a.step()
							}
							if !b.end {
								b.step()
							}
						}
						for i, s := range []*relayStep{a, b} {
							if !bytes.Equal(s.passed, whole) || !s.chk.done {
								t.Fatalf("%s cuts %v (stream %d): let %d bytes through (done %v), want %d", name, cuts, i, len(s.passed), s.chk.done, len(whole))
							}
						}
					}
				}
			}
		}
	}
}
