package proxy

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/sluice-gw/sluice/internal/openai"
)

// maxScrubbed bounds the head of an error answer held and scrubbed whole,
// so that its Content-Length stays exact; a longer body is scrubbed as it
// streams (keyScrubber) and relayed without one. It is also the bound on a
// compressed error answer's decompressed size.
const maxScrubbed = 64 << 10

// keyMask replaces the backend's key in an error answer.
const keyMask = "xxxxx"

// scrubKey hides key, the backend's api_key (the gateway's own credential
// upstream, never the client's), in resp's body, an error answer about to
// be relayed. A backend that echoes the key it got ("Incorrect API key
// provided: sk-…", unmasked where OpenAI masks it) would otherwise hand
// the operator's key to every client.
//
// A body of at most maxScrubbed bytes is scrubbed whole and its
// Content-Length follows the change; a longer one is scrubbed as it
// streams, across read boundaries, and relayed without Content-Length. A
// compressed body (a backend that ignores Accept-Encoding: identity) is
// decompressed when it is gzip or deflate and at most maxScrubbed bytes
// decompressed, and relayed uncompressed; any other is withheld: its
// status is kept, its body replaced by an OpenAI error naming reqID.
func scrubKey(resp *http.Response, key, reqID string) {
	if encoded(resp) {
		scrubEncoded(resp, key, reqID)
		return
	}
	held, err := io.ReadAll(io.LimitReader(resp.Body, maxScrubbed+1))
	if err != nil || len(held) > maxScrubbed {
		// Longer than the window, or a read error (which recurs on the
		// next read: relayRaw sees it): the rest streams through the
		// scrubber, whose changes no Content-Length can announce.
		resp.ContentLength = -1
		resp.Header.Del("Content-Length")
		resp.Body = heldBody{Reader: newKeyScrubber(io.MultiReader(bytes.NewReader(held), resp.Body), key), Closer: resp.Body}
		return
	}
	k := []byte(key)
	if bytes.Contains(held, k) {
		n := len(held)
		held = bytes.ReplaceAll(held, k, []byte(keyMask))
		if resp.ContentLength >= 0 {
			resp.ContentLength += int64(len(held) - n)
			resp.Header["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
		}
	}
	resp.Body = heldBody{Reader: io.MultiReader(bytes.NewReader(held), resp.Body), Closer: resp.Body}
}

// scrubEncoded is scrubKey for a compressed body: decoded (gzip, deflate)
// within maxScrubbed and scrubbed, else withheld.
func scrubEncoded(resp *http.Response, key, reqID string) {
	ce := strings.ToLower(strings.TrimSpace(headerGet(resp.Header, "Content-Encoding")))
	var plain []byte
	var err error
	switch ce {
	case "gzip", "x-gzip":
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(resp.Body); err == nil {
			plain, err = readBounded(zr)
		}
	case "deflate":
		// HTTP's deflate is zlib; some servers send raw DEFLATE, which
		// fails the zlib header check and is withheld.
		var zr io.ReadCloser
		if zr, err = zlib.NewReader(resp.Body); err == nil {
			plain, err = readBounded(zr)
		}
	default:
		err = fmt.Errorf("content coding %q is not decoded", ce)
	}
	resp.Header.Del("Content-Encoding")
	body := resp.Body
	if err != nil {
		e := openai.ServerError(resp.StatusCode, "upstream_error",
			"the backend's error answer was compressed in a way the gateway cannot check for its credentials, so it is withheld (request id "+reqID+")")
		plain = e.JSON()
		resp.Header.Set("Content-Type", "application/json")
	} else {
		plain = bytes.ReplaceAll(plain, []byte(key), []byte(keyMask))
	}
	resp.ContentLength = int64(len(plain))
	resp.Header["Content-Length"] = []string{strconv.Itoa(len(plain))}
	resp.Body = heldBody{Reader: bytes.NewReader(plain), Closer: body}
}

// readBounded reads a decompressed body of at most maxScrubbed bytes; a
// longer one is an error (a decompression bomb is not inflated further).
func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxScrubbed+1))
	if err == nil && len(b) > maxScrubbed {
		err = fmt.Errorf("decompressed error answer over %d bytes", maxScrubbed)
	}
	return b, err
}

// heldBody is a body whose first bytes were read and put back.
type heldBody struct {
	io.Reader
	io.Closer
}

// keyScrubber replaces key by keyMask in what it reads from src, matches
// that straddle two reads included: the last len(key)-1 bytes of each read
// are held back until the next one says whether they start the key.
type keyScrubber struct {
	src     io.Reader
	key     []byte
	chunk   []byte
	pending []byte // read, not yet known to be clear of a key's start
	out     []byte // scrubbed, not yet returned
	err     error
}

func newKeyScrubber(src io.Reader, key string) *keyScrubber {
	return &keyScrubber{src: src, key: []byte(key), chunk: make([]byte, 16<<10)}
}

func (s *keyScrubber) Read(p []byte) (int, error) {
	for len(s.out) == 0 && s.err == nil {
		s.fill()
	}
	if len(s.out) == 0 {
		return 0, s.err
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

func (s *keyScrubber) fill() {
	n, err := s.src.Read(s.chunk)
	s.pending = append(s.pending, s.chunk[:n]...)
	for {
		i := bytes.Index(s.pending, s.key)
		if i < 0 {
			break
		}
		s.out = append(s.out, s.pending[:i]...)
		s.out = append(s.out, keyMask...)
		s.pending = s.pending[i+len(s.key):]
	}
	keep := len(s.key) - 1
	if err != nil {
		keep, s.err = 0, err
	}
	if cut := len(s.pending) - keep; cut > 0 {
		s.out = append(s.out, s.pending[:cut]...)
		s.pending = append([]byte(nil), s.pending[cut:]...)
	}
}
