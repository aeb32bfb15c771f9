package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// maxScrubbed bounds the head of an error answer searched for the
// backend's key: error bodies are a few hundred bytes; one longer is
// relayed past this as it comes.
const maxScrubbed = 64 << 10

// keyMask replaces the backend's key in an error answer.
const keyMask = "xxxxx"

// scrubKey hides key, the backend's api_key (the gateway's own credential
// upstream, never the client's), in the first maxScrubbed bytes of resp's
// body, an error answer about to be relayed. A backend that echoes the
// key it got ("Incorrect API key provided: sk-…", unmasked where OpenAI
// masks it) would otherwise hand the operator's key to every client. The
// held bytes are put back in front of the rest of the body, and
// Content-Length follows the change.
func scrubKey(resp *http.Response, key string) {
	held, _ := io.ReadAll(io.LimitReader(resp.Body, maxScrubbed)) // a read error recurs on the next read: relayRaw sees it
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

// heldBody is a body whose first bytes were read and put back.
type heldBody struct {
	io.Reader
	io.Closer
}
