package h1client

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// The head parsing made faster on branch proxyfast (one-pass name check,
// framing fields noted while parsing) is checked here against the parsing
// it replaced and against net/http's client on the same bytes: a backend
// must not be able to get a framing out of the lean client that either of
// them would not have given (response smuggling), and where the lean
// client refuses what net/http accepts, the refusal is one of the kinds
// listed (stricter, never laxer).

// parseFieldsBefore is parseFields as it was before branch proxyfast
// (d50a9c29): every name checked with validToken, then canonicalised.
func parseFieldsBefore(block string, ends []int32) (http.Header, error) {
	hdr := make(http.Header, len(ends))
	values := make([]string, len(ends))
	start := 0
	for i, end := range ends {
		line := block[start:end]
		start = int(end)
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || !validToken(line[:colon]) {
			return nil, malformed("header field name")
		}
		v := strings.Trim(line[colon+1:], " \t")
		if !validValue(v) {
			return nil, malformed("header field value")
		}
		key := textproto.CanonicalMIMEHeaderKey(line[:colon])
		values[i] = v
		if vs, ok := hdr[key]; ok {
			hdr[key] = append(vs, v)
		} else {
			hdr[key] = values[i : i+1 : i+1]
		}
	}
	return hdr, nil
}

// blockOf lays lines out as readHead does: back to back, with their ends.
func blockOf(lines []string) (string, []int32) {
	var b strings.Builder
	ends := make([]int32, 0, len(lines))
	for _, l := range lines {
		b.WriteString(l)
		ends = append(ends, int32(b.Len()))
	}
	return b.String(), ends
}

// sameAsBefore fails t if the merged parseFields and frame decide lines
// differently from the code before the merge (all framing fields looked
// up in the map, as frame and wantsClose did then).
func sameAsBefore(t *testing.T, lines []string) {
	t.Helper()
	block, ends := blockOf(lines)
	hdr, fields, err := parseFields(block, ends)
	was, wasErr := parseFieldsBefore(block, ends)
	if (err == nil) != (wasErr == nil) || err != nil && err.Error() != wasErr.Error() {
		t.Fatalf("%q: error %v, before %v", lines, err, wasErr)
	}
	if err != nil {
		return
	}
	if !reflect.DeepEqual(hdr, was) {
		t.Fatalf("%q: header %v, before %v", lines, hdr, was)
	}
	for _, name := range []struct {
		key string
		bit framingFields
	}{{"Transfer-Encoding", hasTransferEncoding}, {"Content-Length", hasContentLength}, {"Connection", hasConnection}} {
		if _, ok := hdr[name.key]; ok != (fields&name.bit != 0) {
			t.Fatalf("%q: %s present %v, noted %v", lines, name.key, ok, !ok)
		}
	}
	for _, minor := range []int{0, 1} {
		for _, code := range []int{200, 204, 304} {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				now := head{code: code, minor: minor, header: cloneHeader(hdr), framing: fields}
				then := head{code: code, minor: minor, header: cloneHeader(was), framing: hasTransferEncoding | hasContentLength | hasConnection}
				f, err := frame(now, method, false)
				g, gErr := frame(then, method, false)
				if f != g || (err == nil) != (gErr == nil) || !reflect.DeepEqual(now.header, then.header) {
					t.Fatalf("%q HTTP/1.%d %d %s: framing %+v %v, before %+v %v", lines, minor, code, method, f, err, g, gErr)
				}
			}
		}
	}
}

func cloneHeader(h http.Header) http.Header {
	c := make(http.Header, len(h))
	for k, vs := range h {
		c[k] = append([]string(nil), vs...)
	}
	return c
}

// The field lines a malicious or broken backend might send to split one
// answer into two: names in odd cases, one byte off a common name,
// duplicates, both framings, folded lines, spaces before the colon,
// control bytes, very long names.
var smugglingFields = [][]string{
	{"Content-Length: 3"},
	{"content-LENGTH: 3"},
	{"CONTENT-LENGTH: 3"},
	{"Transfer-encoding: chunked"},
	{"transfer-encoding: chunked"},
	{"Content-Length: 3", "Content-Length: 3"},
	{"Content-Length: 3", "content-length: 4"},
	{"Content-Length: 3", "Content-Length: 3, 3"},
	{"Content-Length: 3", "Transfer-Encoding: chunked"},
	{"content-length: 3", "TRANSFER-ENCODING: chunked"},
	{"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"},
	{"Transfer-Encoding: chunked, identity"},
	{"Transfer-Encoding: identity"},
	{"Transfer-Encoding: gzip, chunked"},
	{"Transfer-Encoding:chunked"},
	{"Transfer-Encoding: \tchunked \t"},
	{"Transfer-Encoding: CHUNKED"},
	{"Transfer-Encoding: chunked", " identity"}, // obs-fold
	{"Content-Length: 3", "\tContent-Length: 4"},
	{"Content-Length : 3"},
	{"Content-Length\t: 3"},
	{" Content-Length: 3"},
	{"Content-Length: +3"},
	{"Content-Length: 0x3"},
	{"Content-Length: 3 4"},
	{"Content-Length: -1"},
	{"Content-Length: 99999999999999999999"},
	{"Content-Length: 3\x00"},
	{"Content-Length: 3\r"},
	{"Content-Length: 3\rX: y"},
	{"X: a\x00b", "Content-Length: 3"},
	{"Content-Lengtj: 4", "Content-Length: 3"},
	{"Content_Length: 4", "Content-Length: 3"},
	{"Content-Lengt: 4", "Content-Length: 3"},
	{"Content-Length2: 4", "Content-Length: 3"},
	{"Transfer-Encodinf: chunked", "Content-Length: 3"},
	{"Transfer_Encoding: chunked", "Content-Length: 3"},
	{"Transfer-Encoding\x00: chunked", "Content-Length: 3"},
	{"Content-Length\xc5: 4", "Content-Length: 3"},
	{"Connection: close", "Content-Length: 3"},
	{"connection: CLOSE", "Content-Length: 3"},
	{"Connection: keep-alive", "Content-Length: 3"},
	{"Connectiom: close", "Content-Length: 3"},
	{"Connection: foo, close", "Content-Length: 3"},
	{"Connection: foo", "connection: close", "Content-Length: 3"},
	{"Date: x", "Server: y", "Vary: z", "Cache-Control: no", "Content-Type: text/plain", "Content-Length: 3"},
	{"DATE: x", "server: y", "vAry: z", "cache-control: no", "content-type: text/plain", "Content-Length: 3"},
	{":3", "Content-Length: 3"},
	{"Content-Length", "Content-Length: 3"},
	{strings.Repeat("X", 4000) + ": 1", "Content-Length: 3"},
	{strings.Repeat("content-length", 200) + ": 4", "Content-Length: 3"},
}

// TestHeadParsingMatchesBefore: on each smuggling shape the merged parsing
// gives the same header, error and framing as the parsing it replaced.
func TestHeadParsingMatchesBefore(t *testing.T) {
	for _, lines := range smugglingFields {
		sameAsBefore(t, lines)
	}
}

// FuzzHeadParsingMatchesBefore: any field lines (split at '\n', as
// readHead's lines are) are parsed and framed as before the merge.
func FuzzHeadParsingMatchesBefore(f *testing.F) {
	for _, lines := range smugglingFields {
		f.Add(strings.Join(lines, "\n"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return
		}
		sameAsBefore(t, strings.Split(s, "\n"))
	})
}

// answer is what a client made of an answer's bytes.
type answer struct {
	refused  bool
	code     int
	length   int64
	chunked  bool
	close    bool
	header   http.Header
	body     string
	bodyFail bool
}

// leanAnswer sends a GET through the lean client to a backend that
// answers raw and closes.
func leanAnswer(raw []byte) answer {
	resp, done, err := getFromRaw(raw)
	defer done()
	if err != nil {
		return answer{refused: true}
	}
	return readAnswer(resp)
}

// getFromRaw sends a GET through a new lean client to a backend that
// reads the request, answers raw and closes (over net.Pipe); done
// closes the client's idle connections, once the body was read.
func getFromRaw(raw []byte) (resp *http.Response, done func(), err error) {
	dial := func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go func() { // ends when the answer is written or the pipe closed
			defer server.Close()
			if _, err := http.ReadRequest(bufio.NewReader(server)); err == nil {
				server.Write(raw)
			}
		}()
		return client, nil
	}
	c := New(Options{Dial: dial})
	req, _ := http.NewRequest(http.MethodGet, "http://backend/", nil)
	resp, err = c.RoundTrip(req)
	return resp, c.CloseIdleConnections, err
}

// netAnswer reads raw as net/http's client does (http.ReadResponse).
func netAnswer(raw []byte) answer {
	req, _ := http.NewRequest(http.MethodGet, "http://backend/", nil)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
	if err != nil {
		return answer{refused: true}
	}
	return readAnswer(resp)
}

func readAnswer(resp *http.Response) answer {
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return answer{code: resp.StatusCode, length: resp.ContentLength, chunked: len(resp.TransferEncoding) > 0,
		close: resp.Close, header: resp.Header, body: string(b), bodyFail: err != nil}
}

// agreesWithNetHTTP fails t if the lean client takes from raw an answer
// net/http would refuse, or frames it differently; it reports whether the
// lean client refused what net/http accepted (stricter).
func agreesWithNetHTTP(t *testing.T, raw []byte) (stricter bool) {
	t.Helper()
	lean, std := leanAnswer(raw), netAnswer(raw)
	switch {
	case lean.refused && std.refused:
		return false
	case lean.refused:
		return true
	case std.refused:
		t.Fatalf("%q: the lean client accepted %+v, net/http refused", raw, lean)
	}
	if lean.bodyFail != std.bodyFail {
		if lean.bodyFail {
			return true
		}
		if lean.chunked && std.chunked && lean.body == std.body {
			// net/http read the same data and then refused the trailer:
			// the lean client drops trailer lines unchecked (body.go),
			// where the body ends is the same for both.
			return false
		}
		t.Fatalf("%q: the lean client read the body whole, net/http failed", raw)
	}
	// net/http drops a "Connection: close" it acted on from the header;
	// the field is hop-by-hop (the proxy relays none), so it is not
	// compared, the close it asks for is (below).
	delete(lean.header, "Connection")
	delete(std.header, "Connection")
	if lean.code != std.code || lean.length != std.length || lean.chunked != std.chunked ||
		lean.body != std.body || !reflect.DeepEqual(lean.header, std.header) {
		t.Fatalf("%q: the lean client %+v, net/http %+v", raw, lean, std)
	}
	if lean.close != std.close && !lean.close {
		// Keeping a connection net/http would close could pipeline a
		// backend's leftovers into the next answer.
		t.Fatalf("%q: the lean client keeps the connection, net/http closes it", raw)
	}
	return false
}

// TestHeadsAgreeWithNetHTTP: on each smuggling shape, whole answers, the
// lean client accepts only what net/http accepts, frames it the same, and
// refuses net/http's lax cases only where listed.
func TestHeadsAgreeWithNetHTTP(t *testing.T) {
	// net/http accepts these; the lean client refuses them on purpose:
	// both framings (net/http drops the Content-Length), and a space
	// before the colon (net/http keeps "Content-Length " as a field of
	// its own, uncanonicalised, and reads the body to the close). Every
	// other shape above both refuse or both frame alike.
	stricter := map[string]bool{
		"Content-Length: 3|Transfer-Encoding: chunked": true,
		"content-length: 3|TRANSFER-ENCODING: chunked": true,
		"Content-Length : 3":                           true,
	}
	for _, lines := range smugglingFields {
		raw := "HTTP/1.1 200 OK\r\n" + strings.Join(lines, "\r\n") + "\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
		key := strings.Join(lines, "|")
		if got := agreesWithNetHTTP(t, []byte(raw)); got != stricter[key] && len(key) < 200 {
			t.Errorf("%q: refused where net/http accepts: %v, listed %v", key, got, stricter[key])
		}
	}
}

// FuzzResponseMatchesNetHTTP: any answer's bytes, read by the lean client
// and by net/http: never accepted by the lean client alone, never framed
// differently.
func FuzzResponseMatchesNetHTTP(f *testing.F) {
	for _, lines := range smugglingFields {
		f.Add([]byte("HTTP/1.1 200 OK\r\n" + strings.Join(lines, "\r\n") + "\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		agreesWithNetHTTP(t, raw)
	})
}

// TestBytesPastABodyAreNeverTheNextAnswer: a backend that sends more than
// its Content-Length (here a whole forged second answer in the same
// write) leaves its connection unusable: the next request goes on a new
// connection and gets its own answer, not the leftovers. The body ends
// at exactly its declared length, so the leftovers are already buffered
// when the connection goes back to the pool (alive's Buffered check).
func TestBytesPastABodyAreNeverTheNextAnswer(t *testing.T) {
	srv := newRawServer(t, func(i int, c net.Conn, r *bufio.Reader) {
		for {
			if _, err := readRequest(r); err != nil {
				return
			}
			answer := "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"
			if i == 0 {
				answer = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" +
					"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
			}
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
	c := newClient(t, Options{})
	for i, want := range []string{"abc", "real"} {
		resp, err := c.RoundTrip(get(t, context.Background(), srv.url()))
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, resp); b != want {
			t.Fatalf("answer %d: %q, want %q", i, b, want)
		}
	}
	if n := srv.conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the first one not reused)", n)
	}
}
