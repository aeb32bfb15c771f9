package h1client

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
)

// The token class is RFC 9110 §5.6.2's tchar, byte for byte.
func TestTcharIsRFC9110(t *testing.T) {
	const tchar = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for c := 0; c < 256; c++ {
		if want := strings.IndexByte(tchar, byte(c)) >= 0; isTchar(byte(c)) != want {
			t.Errorf("isTchar(%#x) = %v, want %v", c, !want, want)
		}
	}
}

// A field value refuses a control byte but HTAB, and DEL, wherever it is in
// the value: each byte at each place of values around the word size.
func TestValidValueEveryByteEveryPlace(t *testing.T) {
	for n := 1; n <= 20; n++ {
		for at := 0; at < n; at++ {
			for c := 0; c < 256; c++ {
				v := bytes.Repeat([]byte{'a'}, n)
				v[at] = byte(c)
				want := c >= ' ' && c != 0x7f || c == '\t'
				if got := validValue(v); got != want {
					t.Fatalf("validValue(%q) = %v, want %v", v, got, want)
				}
				if got := validValue(string(v)); got != want {
					t.Fatalf("validValue(string %q) = %v, want %v", v, got, want)
				}
			}
		}
	}
}

// The check for a body longer than declared reads into the message's spare
// byte: encoding a request with a known body allocates only the message.
func TestEncodeKnownBodyAllocatesTheMessageOnly(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hello there"}]}`)
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/v1/chat/completions", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	rd := bytes.NewReader(body)
	req.ContentLength = int64(len(body))
	req.Body = nopBody{rd}
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(body)
		e, err := encode(buf[:0], req, 1<<20)
		if err != nil || !bytes.HasSuffix(e.msg, body) {
			t.Fatalf("encode: %v, %q", err, e.msg)
		}
	})
	if allocs != 0 && !raceBuild {
		t.Errorf("encode allocated %v times per request, want 0", allocs)
	}
	rd.Reset(append(body[:len(body):len(body)], 'x'))
	if _, err := encode(buf[:0], req, 1<<20); err == nil {
		t.Error("a body longer than its Content-Length was encoded")
	}
}

type nopBody struct{ *bytes.Reader }

func (nopBody) Close() error { return nil }

// canonicalToken agrees with validToken and with CanonicalMIMEHeaderKey,
// which parseFields now calls only for a name it reports not canonical.
func FuzzCanonicalToken(f *testing.F) {
	for _, s := range []string{"Content-Type", "content-type", "CONTENT-TYPE", "X-Request-Id", "X-Request-ID", "Date", "a", "A", "-", "-a", "A-", "A--b", "Foo_bar", "Foo bar", "", "É", "Www-Authenticate", "X-B3-Traceid", "Accept-Encoding"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		token, canonical := canonicalToken(s)
		if token != validToken(s) {
			t.Fatalf("canonicalToken(%q) token %v, validToken %v", s, token, !token)
		}
		if token && canonical != (textproto.CanonicalMIMEHeaderKey(s) == s) {
			t.Fatalf("canonicalToken(%q) canonical %v, CanonicalMIMEHeaderKey %q", s, canonical, textproto.CanonicalMIMEHeaderKey(s))
		}
	})
}

// The request target is RequestURI's, and an Opaque URL with a space or a
// line break is escaped rather than sent to split the request line.
func TestRequestURI(t *testing.T) {
	for _, c := range []struct {
		u    url.URL
		want string
	}{
		{url.URL{Path: "/v1/chat/completions"}, "/v1/chat/completions"},
		{url.URL{Path: "/v1/chat/completions", RawQuery: "api-version=1"}, "/v1/chat/completions?api-version=1"},
		{url.URL{Path: "/a b"}, "/a%20b"},
		{url.URL{Opaque: "/a b"}, url.PathEscape("/a b")},
		{url.URL{Opaque: "/a\r\nX: y"}, url.PathEscape("/a\r\nX: y")},
		{url.URL{Opaque: "/a\nb"}, url.PathEscape("/a\nb")},
	} {
		if got := requestURI(&c.u); got != c.want {
			t.Errorf("requestURI(%#v) = %q, want %q", c.u, got, c.want)
		}
	}
}

// The names knownField passes without the byte check are canonical tokens,
// and it passes no other spelling of them.
func TestKnownFieldsAreCanonicalTokens(t *testing.T) {
	for _, name := range []string{"Content-Type", "Content-Length", "Date", "Server", "Connection", "Transfer-Encoding", "Cache-Control", "Vary"} {
		if !knownField(name) {
			t.Errorf("knownField(%q) = false", name)
		}
		if token, canonical := canonicalToken(name); !token || !canonical {
			t.Errorf("%q: token %v, canonical %v", name, token, canonical)
		}
		for _, other := range []string{strings.ToLower(name), strings.ToUpper(name), name + " ", " " + name} {
			if knownField(other) {
				t.Errorf("knownField(%q) = true", other)
			}
		}
	}
}

// The User-Agent is sent last, as net/http sends it: Go's by default, the
// request's own when set, none when set to nothing.
func TestEncodeUserAgent(t *testing.T) {
	for _, c := range []struct {
		name string
		ua   []string // nil: no User-Agent key
		want string   // the line, "" for none
	}{
		{"default", nil, "User-Agent: Go-http-client/1.1\r\n"},
		{"own", []string{"sluice-test/1"}, "User-Agent: sluice-test/1\r\n"},
		{"first of two", []string{"a/1", "b/2"}, "User-Agent: a/1\r\n"},
		{"empty value", []string{""}, ""},
		{"no values", []string{}, ""},
	} {
		req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/v1/models", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header["X-Request-Id"] = []string{"r1"}
		if c.ua != nil {
			req.Header["User-Agent"] = c.ua
		}
		e, err := encode(nil, req, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		msg := string(e.msg)
		if !strings.Contains(msg, "X-Request-Id: r1\r\n") {
			t.Errorf("%s: no X-Request-Id in %q", c.name, msg)
		}
		if got := strings.Count(msg, "User-Agent"); c.want == "" && got != 0 || c.want != "" && (got != 1 || !strings.HasSuffix(msg, c.want+"\r\n")) {
			t.Errorf("%s: head %q, want User-Agent line %q last", c.name, msg, c.want)
		}
	}
}
