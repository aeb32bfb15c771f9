package chaos

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"testing"
)

// TestFDAccount reads this test process' own fd table, with real loopback
// sockets in it, and checks what the leak target leaves out: the
// observer's connection to a server (the server's end is the observer's,
// the client's end is an ordinary socket), and one of two established
// connections to a "Redis node". Everything else is counted.
func TestFDAccount(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	obs := newObserverConns()
	c := obs.client()
	defer c.CloseIdleConnections()
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // idle in the client's pool: both ends stay open

	node, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := node.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 2 {
		d, err := net.Dial("tcp", node.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		defer (<-accepted).Close()
	}

	rules := fdRules{observer: obs.has, store: map[string]bool{node.Addr().String(): true}}
	fds, err := readFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	a := rules.account(fds)
	if a.Observer != 1 {
		t.Errorf("observer = %d, want 1 (the server's end of the observer's connection)", a.Observer)
	}
	if a.Store != 1 {
		t.Errorf("store = %d, want 1 (one connection per Redis node; the second is counted)", a.Store)
	}
	if a.Pooled != 0 {
		t.Errorf("pooled = %d, want 0 (no backends named)", a.Pooled)
	}
	if got := a.Counted(); got != a.Total-2 {
		t.Errorf("counted = %d of %d, want all but the observer's and one store connection", got, a.Total)
	}

	// Once the observer's connection is closed, its address is forgotten:
	// a socket the gateway kept to that address would be counted.
	c.CloseIdleConnections()
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.local) != 0 {
		t.Errorf("observer still knows %v after its connections closed", obs.local)
	}
}

// TestFDAccountStoreCloseWait checks that a connection to a Redis node the
// node has closed (close-wait: the client did not notice) is counted, not
// left out as the node's connection.
func TestFDAccountStoreCloseWait(t *testing.T) {
	fds := []fdEntry{
		{target: "socket:[1]", tcp: &tcpSocket{local: "127.0.0.1:5000", remote: "127.0.0.1:7000", state: "08"}},
		{target: "socket:[2]", tcp: &tcpSocket{local: "127.0.0.1:5001", remote: "127.0.0.1:7001", state: tcpEstablished}},
		{target: "socket:[3]", tcp: &tcpSocket{local: "127.0.0.1:8080", remote: "0.0.0.0:0", state: tcpListen}},
		{target: "socket:[4]"},
		{target: "anon_inode:[eventpoll]"},
	}
	a := fdRules{store: map[string]bool{"127.0.0.1:7000": true, "127.0.0.1:7001": true}}.account(fds)
	if a.Store != 1 || a.Counted() != 4 {
		t.Errorf("store %d, counted %d; want 1 (the established one) and 4", a.Store, a.Counted())
	}
	if a.Files["socket (not IPv4 TCP)"] != 1 || a.Files["anon_inode"] != 1 || a.Peers["listen"] != 1 {
		t.Errorf("files %v, peers %v", a.Files, a.Peers)
	}
}
