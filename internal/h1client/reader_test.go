package h1client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// chopReader returns its bytes in reads of random sizes (1 byte up to
// the whole rest), as a socket does.
type chopReader struct {
	data []byte
	rnd  *rand.Rand
}

func (c *chopReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rnd.IntN(3*smallReadBuffer))
	if c.rnd.IntN(4) == 0 {
		n = min(n, 1+c.rnd.IntN(8))
	}
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// TestReaderMatchesBufio drives the growing reader and a bufio.Reader of
// the bound's size with the same calls over the same bytes cut into
// random reads: lines (up to and past the bound) and Reads of random
// sizes must give the same bytes and the same errors.
func TestReaderMatchesBufio(t *testing.T) {
	const max = 8 << 10
	for seed := range uint64(300) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		var data []byte
		for range 40 {
			n := rnd.IntN(3 * smallReadBuffer)
			if rnd.IntN(10) == 0 {
				n = max - 1 + rnd.IntN(3) // at, just under and just past the bound
			}
			data = append(data, bytes.Repeat([]byte{'a' + byte(rnd.IntN(26))}, n)...)
			data = append(data, '\n')
		}
		var pool sync.Pool
		pool.New = func() any { b := make([]byte, max); return &b }
		var smalls sync.Pool // odd seeds: with the tiny buffer (shrink and release between calls)
		smalls.New = func() any { b := make([]byte, smallReadBuffer); return &b }
		var smallp *sync.Pool
		if seed%2 == 1 {
			smallp = &smalls
		}
		gotr := newReader(&chopReader{data: data, rnd: rand.New(rand.NewPCG(seed, 2))}, max, &pool, smallp)
		got := &gotr
		want := bufio.NewReaderSize(&chopReader{data: data, rnd: rand.New(rand.NewPCG(seed, 3))}, max)
		for step := 0; ; step++ {
			switch rnd.IntN(4) { // what a body read's end and an idle connection do
			case 0:
				got.shrink()
			case 1:
				got.release()
			}
			if rnd.IntN(2) == 0 {
				g, gerr := got.line()
				w, werr := want.ReadSlice('\n')
				if werr == bufio.ErrBufferFull {
					if gerr != errLineTooLong {
						t.Fatalf("seed %d step %d: line past the bound: err %v", seed, step, gerr)
					}
					break
				}
				if !bytes.Equal(g, w) || gerr != werr {
					t.Fatalf("seed %d step %d: line %q, %v; bufio %q, %v", seed, step, trim(g), gerr, trim(w), werr)
				}
				if werr != nil {
					break
				}
				continue
			}
			size := 1 + rnd.IntN(2*max)
			g, w := make([]byte, size), make([]byte, size)
			gn, gerr := io.ReadFull(got, g)
			wn, werr := io.ReadFull(want, w)
			if gn != wn || !bytes.Equal(g[:gn], w[:wn]) || gerr != werr {
				t.Fatalf("seed %d step %d: read %d, %v; bufio %d, %v", seed, step, gn, gerr, wn, werr)
			}
			if werr != nil {
				break
			}
		}
	}
}

// TestReaderLineBoundByteByByte: with the bytes arriving one at a time
// (every buffered length is passed through), a line of exactly the bound
// (newline included) is returned whole and one byte more is
// errLineTooLong, as bufio.Reader.ReadSlice with a buffer of the bound
// says ErrBufferFull.
func TestReaderLineBoundByteByByte(t *testing.T) {
	for _, max := range []int{smallReadBuffer, 8 << 10, 32 << 10} {
		for _, n := range []int{max - 1, max, max + 1} {
			line := append(bytes.Repeat([]byte{'h'}, n-1), '\n')
			data := append(append([]byte{}, line...), "next\n"...)
			var pool sync.Pool
			pool.New = func() any { b := make([]byte, max); return &b }
			rv := newReader(iotest.OneByteReader(bytes.NewReader(data)), max, &pool, nil)
			r := &rv
			got, err := r.line()
			if n > max {
				if err != errLineTooLong {
					t.Errorf("bound %d, line of %d bytes: err %v, want errLineTooLong", max, n, err)
				}
				continue
			}
			if err != nil || !bytes.Equal(got, line) {
				t.Errorf("bound %d, line of %d bytes: got %d bytes, %v", max, n, len(got), err)
				continue
			}
			if got, err := r.line(); string(got) != "next\n" || err != nil {
				t.Errorf("bound %d: the line after: %q, %v", max, got, err)
			}
		}
	}
}

func trim(b []byte) string {
	if len(b) > 40 {
		return fmt.Sprintf("%s...(%d bytes)", b[:40], len(b))
	}
	return string(b)
}

// TestHeaderLineBound: a response header line up to ReadBufferSize bytes
// (CRLF included, 32 KiB by default) is read, as it was when the buffer
// was that size from the start; one byte more is a malformed response.
// The same bound holds for a chunk-size line (a long extension).
func TestHeaderLineBound(t *testing.T) {
	for _, bound := range []int{0, 8 << 10} {
		max := bound
		if max == 0 {
			max = 32 << 10
		}
		for _, extra := range []int{0, 1} {
			// "X-Long: " + value + "\r\n" is max+extra bytes.
			value := strings.Repeat("v", max+extra-len("X-Long: \r\n"))
			raw := "HTTP/1.1 200 OK\r\nX-A: 1\r\nX-Long: " + value + "\r\nContent-Length: 2\r\n\r\nok"
			srv := answerWith(t, false, raw)
			c := newClient(t, Options{ReadBufferSize: bound})
			resp, err := c.RoundTrip(post(t, context.Background(), srv.url(), "{}"))
			name := fmt.Sprintf("bound %d, header line of %d bytes", max, max+extra)
			if extra == 0 {
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if got := resp.Header.Get("X-Long"); got != value || readAll(t, resp) != "ok" {
					t.Fatalf("%s: value of %d bytes, want %d", name, len(got), len(value))
				}
				continue
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(fmt.Sprint(err), "header line too long") || resp != nil {
				t.Fatalf("%s: err %v, want ErrMalformed: header line too long", name, err)
			}

		}
		for _, extra := range []int{0, 1} {
			ext := strings.Repeat("e", max+extra-len("2;x=\r\n"))
			raw := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=" + ext + "\r\nok\r\n0\r\n\r\n"
			srv := answerWith(t, false, raw)
			c := newClient(t, Options{ReadBufferSize: bound})
			resp, err := c.RoundTrip(post(t, context.Background(), srv.url(), "{}"))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			name := fmt.Sprintf("bound %d, chunk-size line of %d bytes", max, max+extra)
			if extra == 0 && (err != nil || string(body) != "ok") {
				t.Fatalf("%s: %q, %v", name, body, err)
			}
			if extra == 1 && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: err %v, want ErrMalformed", name, err)
			}
		}
	}
}

// TestHeldStreamKeepsTheSmallReadBuffer: a stream read one small event at
// a time holds its 1 KiB tiny read buffer alone (the 4 KiB small one lent
// back to the pool), not the 32 KiB bound (thousands of held streams were
// each holding 32 KiB, then 4); a burst that fills the buffer grows it,
// and the connection gives the grown buffer back when it goes idle, with
// the small one again, so the next stream on it starts as the first.
func TestHeldStreamKeepsTheSmallReadBuffer(t *testing.T) {
	event := "data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}}]}\n\n"
	burst := strings.Repeat("x", 64<<10)
	next, quit := make(chan struct{}), make(chan struct{})
	srv := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		for range 2 {
			if _, err := readRequest(r); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
			for range 3 {
				fmt.Fprintf(c, "%x\r\n%s\r\n", len(event), event)
				select {
				case <-next: // the client has read the event
				case <-quit:
					return
				}
			}
			fmt.Fprintf(c, "%x\r\n%s\r\n0\r\n\r\n", len(burst), burst)
		}
	})
	t.Cleanup(func() { close(quit) }) // before the server's cleanup waits for it
	c := newClient(t, Options{})
	for round := range 2 {
		resp, err := c.RoundTrip(post(t, context.Background(), srv.url(), "{}"))
		if err != nil {
			t.Fatal(err)
		}
		cn := resp.Body.(*body).cn
		p := make([]byte, 1024)
		for i := range 3 {
			n, err := io.ReadAtLeast(resp.Body, p, len(event))
			if err != nil || string(p[:n]) != event {
				t.Fatalf("round %d event %d: %q, %v", round, i, p[:n], err)
			}
			if got := len(cn.br.buf); got != tinyReadBuffer || cn.br.small != nil {
				t.Fatalf("round %d event %d: read buffer of %d bytes (small one held: %v), want the %d-byte tiny one alone", round, i, got, cn.br.small != nil, tinyReadBuffer)
			}
			next <- struct{}{}
		}
		var rest bytes.Buffer
		grown := false
		for {
			n, err := resp.Body.Read(p) // reads smaller than the buffer go through it
			rest.Write(p[:n])
			grown = grown || len(cn.br.buf) == 32<<10
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if rest.String() != burst {
			t.Fatalf("round %d: burst of %d bytes, want %d", round, rest.Len(), len(burst))
		}
		if !grown {
			t.Errorf("round %d: the buffer did not grow under a 64 KiB burst", round)
		}
		if got := len(cn.br.buf); got != smallReadBuffer || cn.br.held != nil {
			t.Errorf("round %d: idle connection holds a read buffer of %d bytes, want %d", round, got, smallReadBuffer)
		}
	}
	if st := c.Stats(); st.Dials != 1 {
		t.Errorf("%d dials, want 1 (the connection reused)", st.Dials)
	}
}

// TestHeldStreamGivesTheGrownBufferBack: a backend that gets ahead (a
// burst of small chunks) grows the connection's read buffer to 32 KiB;
// once the relay has read what arrived and goes off to write it to a
// client that does not read, the stream (still open) holds the 4 KiB
// buffer again, not the 32 KiB one, which it kept for its life before.
func TestHeldStreamGivesTheGrownBufferBack(t *testing.T) {
	event := "data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("x", 150) + "\"}}]}\n\n"
	var burst strings.Builder
	var want strings.Builder
	for range (48 << 10) / len(event) {
		fmt.Fprintf(&burst, "%x\r\n%s\r\n", len(event), event)
		want.WriteString(event)
	}
	written, quit := make(chan struct{}), make(chan struct{})
	srv := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		if _, err := readRequest(r); err != nil {
			return
		}
		// One write, under the loopback socket's buffers: all of it is
		// there before the client reads.
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+burst.String())
		close(written)
		<-quit // the stream stays open
	})
	t.Cleanup(func() { close(quit) })
	c := newClient(t, Options{})
	grew := 0
	c.bigBufs.New = func() any { grew++; b := make([]byte, 32<<10); return &b }
	resp, err := c.RoundTrip(post(t, context.Background(), srv.url(), "{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-written
	cn := resp.Body.(*body).cn
	got := make([]byte, 0, want.Len())
	p := make([]byte, 32<<10) // the relay's read
	for len(got) < want.Len() {
		n, err := resp.Body.Read(p)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, p[:n]...)
	}
	if string(got) != want.String() {
		t.Fatalf("read %d bytes, not the %d sent", len(got), want.Len())
	}
	if grew == 0 {
		t.Fatal("the read buffer never grew: the burst did not arrive ahead of the reads")
	}
	if len(cn.br.buf) != tinyReadBuffer || cn.br.held != nil || cn.br.small != nil {
		t.Errorf("held stream keeps a read buffer of %d bytes (small one held: %v), want %d", len(cn.br.buf), cn.br.small != nil, tinyReadBuffer)
	}
}

// TestGrownReadBuffersCounted: Stats.ReadBufferBytes counts a grown read
// buffer while a connection holds it (a read stopped with over 4 KiB
// still buffered) and takes it back when the connection closes with it
// or goes idle, so the gauge built on it returns to 0.
func TestGrownReadBuffersCounted(t *testing.T) {
	event := "data: {\"choices\":[{\"delta\":{\"content\":\"" + strings.Repeat("x", 150) + "\"}}]}\n\n"
	var burst strings.Builder
	for range (48 << 10) / len(event) {
		fmt.Fprintf(&burst, "%x\r\n%s\r\n", len(event), event)
	}
	srv := newRawServer(t, func(_ int, c net.Conn, r *bufio.Reader) {
		for {
			if _, err := readRequest(r); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+burst.String()+"0\r\n\r\n")
		}
	})
	c := newClient(t, Options{})
	// holdGrown reads in small pieces until the buffer has grown and
	// keeps more than 4 KiB: the relay stopped mid-burst.
	holdGrown := func() *http.Response {
		t.Helper()
		resp, err := c.RoundTrip(post(t, context.Background(), srv.url(), "{}"))
		if err != nil {
			t.Fatal(err)
		}
		cn := resp.Body.(*body).cn
		p := make([]byte, 512)
		for len(cn.br.buf) != 32<<10 {
			if _, err := resp.Body.Read(p); err != nil {
				t.Fatalf("the read buffer never grew: %v", err)
			}
		}
		if got := c.Stats().ReadBufferBytes; got != 32<<10 {
			t.Fatalf("held mid-burst: ReadBufferBytes %d, want %d", got, 32<<10)
		}
		return resp
	}
	holdGrown().Body.Close() // an early close drops the connection
	if got := c.Stats().ReadBufferBytes; got != 0 {
		t.Errorf("after an early close: ReadBufferBytes %d, want 0", got)
	}
	resp := holdGrown()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // read to its end: the connection goes idle
	if got := c.Stats(); got.ReadBufferBytes != 0 || got.Idle != 1 {
		t.Errorf("after the end: ReadBufferBytes %d, idle %d; want 0, 1", got.ReadBufferBytes, got.Idle)
	}
}
