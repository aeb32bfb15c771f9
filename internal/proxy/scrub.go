package proxy

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
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
	scrubHeader(resp.Header, key)
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

// scrubHeader hides key in the values of h, a keyed backend's response
// head: a backend (or a proxy before it) reflecting the request's
// Authorization into a header ("X-Echo-Auth: Bearer sk-…", a debugging
// header, a Location naming it) would hand the key to every client as a
// reflecting body would. The bodies were scrubbed, the heads relayed as
// they came. A head without the key (all of them, in practice) costs one
// substring search per value and no allocation.
func scrubHeader(h http.Header, key string) {
	for _, vv := range h {
		for i, v := range vv {
			if strings.Contains(v, key) {
				vv[i] = strings.ReplaceAll(v, key, keyMask)
			}
		}
	}
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

// scrubAnswer makes resp, a 2xx answer of a backend with api_key key,
// read through the scrubber before any of it is checked or relayed: a
// backend that names the key in a success (a debugging echo, a proxy
// reflecting headers) is scrubbed as one naming it in an error is
// (scrubKey). A body compressed although the backend was asked for
// identity is decoded as it streams when it is gzip or deflate, and then
// relayed uncompressed and checked like any answer; its decoded size is
// bounded as an uncompressed answer's is (the relay holds at most
// maxCheckedAnswer of it, and streams the rest). Any other coding cannot
// be read, so the answer is a malformed one (ErrBadAnswer): the attempt
// fails before the client got anything; so does one whose start fails to
// read (any other error, a read failure). The answer's length may change:
// the relay of a held answer sets it again, a longer one goes without
// (scrubbedBody).
func scrubAnswer(resp *http.Response, key string) error {
	scrubHeader(resp.Header, key)
	body := resp.Body
	var src io.Reader = body
	if encoded(resp) {
		ce := strings.ToLower(strings.TrimSpace(headerGet(resp.Header, "Content-Encoding")))
		var err error
		switch ce {
		case "gzip", "x-gzip":
			src, err = gzip.NewReader(body)
		case "deflate":
			src, err = zlib.NewReader(body)
		default:
			err = fmt.Errorf("content coding %q is not decoded", ce)
		}
		switch {
		case err == nil:
		case errors.Is(err, gzip.ErrHeader) || errors.Is(err, zlib.ErrHeader) || errors.Is(err, io.EOF) || !strings.HasSuffix(ce, "gzip") && ce != "deflate":
			return fmt.Errorf("%w: a 2xx compressed (%s) although identity was asked, which the gateway cannot check for its backend's credentials: %w", ErrBadAnswer, ce, err)
		default:
			return err // reading the body's start failed (readFailure says how)
		}
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
	}
	resp.Body = &scrubbedBody{Reader: newKeyScrubber(src, key), Closer: body}
	return nil
}

// scrubbedBody is an answer read through a keyScrubber: its length is the
// backend's less what the mask shortened.
type scrubbedBody struct {
	io.Reader
	io.Closer
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
	pendBuf []byte // pending's and out's buffers, reused
	outBuf  []byte
	err     error
	// newlineInKey: the key holds a newline (no header value does), so
	// one does not end what may start a match.
	newlineInKey bool
}

func newKeyScrubber(src io.Reader, key string) *keyScrubber {
	return &keyScrubber{src: src, key: []byte(key), chunk: make([]byte, 16<<10), newlineInKey: strings.Contains(key, "\n")}
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
	s.out = s.outBuf[:0] // drained (fill runs only then): its buffer is reused
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
	// The last len(key)-1 bytes may start the key, unless a newline
	// follows them: a key (a header value) holds none, so a match cannot
	// cross one. An event stream's events end with one, so nothing of an
	// event is held back until the next arrives.
	keep := len(s.key) - 1
	if !s.newlineInKey {
		keep = min(keep, len(s.pending)-(bytes.LastIndexByte(s.pending, '\n')+1))
	}
	if err != nil {
		keep, s.err = 0, err
	}
	if cut := len(s.pending) - keep; cut > 0 {
		s.out = append(s.out, s.pending[:cut]...)
		s.pending = s.pending[cut:]
	}
	// What is held moves to the front of its buffer (an overlapping
	// copy), so neither buffer is allocated again on every read.
	s.pending = append(s.pendBuf[:0], s.pending...)
	s.pendBuf, s.outBuf = s.pending[:0], s.out[:0]
}
