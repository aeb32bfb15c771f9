package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The upstream transport offers an HTTP/2 backend a window of at most
// MaxH2StreamWindow per stream: what the backend may send of an answer
// before the relay reads it, which net/http holds in the heap (4 MiB a
// stream by net/http's default). Read off the wire: the client's SETTINGS
// frame, as the backend sees it.
func TestH2StreamWindowBounded(t *testing.T) {
	ref := httptest.NewUnstartedServer(nil)
	ref.EnableHTTP2 = true
	ref.StartTLS() // a certificate, a tls.Config offering h2, a client that trusts it
	defer ref.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ref.TLS)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The connect bound (also the TLS handshake's) is a minute, a hang
	// guard: at 5 s a starved machine gave the handshake up mid-way and
	// the test failed on a reset before it read a frame (flakes11).
	tr := NewTransport(time.Minute)
	tr.TLSClientConfig = ref.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	defer tr.CloseIdleConnections()
	go func() {
		req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/", nil)
		if resp, err := tr.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tc := c.(*tls.Conn)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	preface := make([]byte, len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	if _, err := io.ReadFull(c, preface); err != nil {
		t.Fatal(err)
	}
	var head [9]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		t.Fatal(err)
	}
	n := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
	if head[3] != 0x4 || n%6 != 0 { // SETTINGS
		t.Fatalf("first frame type %d length %d, want SETTINGS", head[3], n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c, payload); err != nil {
		t.Fatal(err)
	}
	window := uint32(65535) // the protocol's default when not set
	for i := 0; i < n; i += 6 {
		if binary.BigEndian.Uint16(payload[i:]) == 0x4 { // SETTINGS_INITIAL_WINDOW_SIZE
			window = binary.BigEndian.Uint32(payload[i+2:])
		}
	}
	if window > MaxH2StreamWindow {
		t.Fatalf("stream window offered %d bytes, want at most %d", window, MaxH2StreamWindow)
	}
	t.Logf("stream window %d", window)
}
