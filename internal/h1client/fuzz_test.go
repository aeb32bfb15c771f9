package h1client

import (
	"errors"
	"io"
	"testing"
)

// FuzzResponse feeds arbitrary bytes as a backend's answer through the
// whole read path (head, framing, body) over an in-memory connection.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nrest",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp, done, err := getFromRaw(raw)
		defer done()
		if err != nil {
			if resp != nil {
				t.Fatalf("response and error: %v", err)
			}
			return
		}
		if resp.StatusCode < 200 || resp.StatusCode > 999 {
			t.Fatalf("final status %d", resp.StatusCode)
		}
		if resp.Header.Get("Content-Length") != "" && resp.TransferEncoding != nil {
			t.Fatal("both framings accepted")
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
			t.Fatalf("read %d bytes of a %d-byte body without error", n, resp.ContentLength)
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrMalformed) && !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("body error %v", err)
		}
	})
}
