package netguard

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// tierLimits: one connection per address, so a second from the same
// address is over the cap; the tier's head wait is long unless a test
// is about it, so nothing here depends on the machine's speed.
func tierLimits(max int, head time.Duration, headBytes int) ConnLimits {
	return ConnLimits{Total: 10, PerIP: 1, Refusal: Refusal{Max: max, HeadTimeout: head, HeadBytes: headBytes,
		Linger: Linger{Time: time.Hour, Timeout: time.Hour, Bytes: 64 << 20}}}
}

// overCap opens the address' one admitted connection (served, so it is
// surely counted) and returns a second, over the cap.
func overCap(t *testing.T, addr string) net.Conn {
	t.Helper()
	if !served(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("the connection within the cap was not served")
	}
	return dialFrom(t, "127.0.0.1", addr)
}

// read503 reads the tier's answer and checks it is what an OpenAI client
// and a retrying one need: 503, Retry-After, Connection: close, an error
// object naming the cap.
func read503(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to an over-cap connection: %v", err)
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Message, Type, Code string }
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !resp.Close ||
		json.Unmarshal(b, &e) != nil || e.Error.Code != "too_many_connections" || !strings.Contains(e.Error.Message, "max_connections_per_ip") {
		t.Fatalf("answer %d %v %s", resp.StatusCode, resp.Header, b)
	}
}

func refusals(m *ConnMetrics, outcome string) float64 {
	return testutil.ToFloat64(m.refusals.WithLabelValues(outcome))
}

func TestOverCapConnectionIsAnswered503AfterItsHead(t *testing.T) {
	l, m, addr := serve(t, tierLimits(4, time.Hour, 4<<10), 0)
	c := overCap(t, addr)
	// A client that sends its body after the head and reads only then
	// still reads the 503: the tier drains what it sends.
	io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n")
	chunk := []byte(strings.Repeat("a", 64<<10))
	for range 128 {
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("the tier stopped reading the body: %v", err)
		}
	}
	read503(t, c)
	c.Close()
	waitFor(t, "the refusal to end at its head", func() bool { return refusals(m, RefusalHead) == 1 })
	if got := testutil.ToFloat64(m.refusal.WithLabelValues(ListenerPublic, RefusedMaxPerIP)); got != 1 {
		t.Fatalf("per-address refusals = %v", got)
	}
	waitFor(t, "the tier to empty", func() bool { return testutil.ToFloat64(m.refusing) == 0 })
	if l.Open() != 1 {
		t.Fatalf("open connections %d: a refused one took a slot", l.Open())
	}
}

// Clients that send no head, or one longer than the tier reads, are
// answered at the head deadline or the byte bound.
func TestOverCapConnectionIsAnsweredAtItsBounds(t *testing.T) {
	_, m, addr := serve(t, tierLimits(4, 50*time.Millisecond, 256), 0)
	silent := overCap(t, addr)
	read503(t, silent)
	silent.Close() // ends the drain
	waitFor(t, "a timeout outcome", func() bool { return refusals(m, RefusalTimeout) == 1 })

	// The byte bound on a server of its own whose head wait cannot run
	// out: under the 50ms one, a client starved between dialling and
	// writing was refused for time (a timeout outcome), not for bytes.
	_, m, addr = serve(t, tierLimits(4, time.Hour, 256), 0)
	long := overCap(t, addr)
	io.WriteString(long, "GET / HTTP/1.1\r\nHost: x\r\nX-Long: "+strings.Repeat("a", 1<<10)+"\r\n\r\n")
	read503(t, long)
	long.Close()
	waitFor(t, "a head_bytes outcome", func() bool { return refusals(m, RefusalHeadBytes) == 1 })
}

// Under a flood the head wait shrinks: once more than half the tier
// waits for heads, a newcomer cuts the oldest wait short and that client
// is answered at once, however long refusal_head_timeout is.
func TestNewcomersHurryTheOldestWait(t *testing.T) {
	_, m, addr := serve(t, tierLimits(4, time.Hour, 4<<10), 0)
	a := overCap(t, addr) // these three send nothing
	waitFor(t, "a to wait", func() bool { return testutil.ToFloat64(m.refusing) == 1 })
	dialFrom(t, "127.0.0.1", addr)
	waitFor(t, "b to wait", func() bool { return testutil.ToFloat64(m.refusing) == 2 })
	dialFrom(t, "127.0.0.1", addr)
	read503(t, a)
	a.Close()
	waitFor(t, "a hurried outcome", func() bool { return refusals(m, RefusalHurried) == 1 })
}

// Past the tier's own cap, over-cap connections are closed at accept,
// unanswered, and counted.
func TestFullTierClosesAtAccept(t *testing.T) {
	_, m, addr := serve(t, tierLimits(2, time.Hour, 4<<10), 0)
	// Two silent clients fill the tier: the first is hurried, answered
	// and drained (it never closes), the second waits for its head.
	first := overCap(t, addr)
	waitFor(t, "the first to wait", func() bool { return testutil.ToFloat64(m.refusing) == 1 })
	dialFrom(t, "127.0.0.1", addr)
	read503(t, first)
	waitFor(t, "the tier to fill", func() bool { return testutil.ToFloat64(m.refusing) == 2 })
	c := dialFrom(t, "127.0.0.1", addr)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a connection past the full tier was not closed: %d %v", n, err)
	}
	if got := refusals(m, RefusalTierFull); got != 1 {
		t.Fatalf("tier_full = %v", got)
	}
}

// Closing the listener ends every refusal at once, and Close returns only
// when the tier's goroutines are gone.
func TestListenerCloseEmptiesTheTier(t *testing.T) {
	l, m, addr := serve(t, tierLimits(4, time.Hour, 4<<10), 0)
	c := overCap(t, addr)
	waitFor(t, "the tier to fill", func() bool { return testutil.ToFloat64(m.refusing) == 1 })
	l.Close()
	if g := testutil.ToFloat64(m.refusing); g != 0 {
		t.Fatalf("%v connections in the tier after Close returned", g)
	}
	if got := refusals(m, RefusalError); got != 1 {
		t.Fatalf("error outcomes = %v after a shutdown", got)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the refused connection is still open after Close: %v", err)
	}
}

// The scanner finds a head's end wherever reads split it: the same answer
// as looking for an empty line in the whole input (CRs change nothing).
func FuzzHeadScanner(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\nHost: x\n\nbody"), uint8(1))
	f.Add([]byte("GET / HTTP/1.1\r\nX: \r\r\n"), uint8(0))
	f.Add([]byte("GET / HTTP/1.1\r\n\r"), uint8(200))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		want := strings.Contains(strings.ReplaceAll(string(data), "\r", ""), "\n\n")
		var h headScanner
		got := false
		for p, n := data, int(step)%7+1; len(p) > 0 && !got; p = p[min(n, len(p)):] {
			got = h.ends(p[:min(n, len(p))])
		}
		if got != want {
			t.Fatalf("ends = %v, want %v for %q", got, want, data)
		}
	})
}

// A liveness probe over the cap is answered as the gateway answers it
// (200 "ok"), GET or HEAD, with a query or without: a gateway at its
// connection cap is busy, not dead, and a 503 there had the kubelet
// restart it. Anything else, /readyz included, still gets the 503.
func TestOverCapLivenessProbeIsAnswered200(t *testing.T) {
	_, m, addr := serve(t, tierLimits(4, time.Hour, 4<<10), 0)
	over := overCap(t, addr)
	over.Close()
	for _, line := range []string{"GET /healthz HTTP/1.1", "HEAD /healthz?probe=1 HTTP/1.1"} {
		c := dialFrom(t, "127.0.0.1", addr) // over the cap: the address' one connection is open
		io.WriteString(c, line+"\r\nHost: x\r\nUser-Agent: kube-probe/1.31\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		req := &http.Request{Method: strings.Fields(line)[0]}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			t.Fatalf("%s: no answer: %v", line, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.Close()
		if want := map[bool]string{true: "", false: "ok\n"}[req.Method == "HEAD"]; resp.StatusCode != http.StatusOK || string(b) != want || !resp.Close {
			t.Fatalf("%s over the cap: %d %q close=%v, want 200 %q", line, resp.StatusCode, b, resp.Close, want)
		}
	}
	waitFor(t, "two liveness outcomes", func() bool { return refusals(m, RefusalLiveness) == 2 })

	for _, line := range []string{"GET /readyz HTTP/1.1", "GET /healthzz HTTP/1.1", "POST /healthz HTTP/1.1"} {
		c := dialFrom(t, "127.0.0.1", addr)
		io.WriteString(c, line+"\r\nHost: x\r\n\r\n")
		read503(t, c)
		c.Close()
	}
}
