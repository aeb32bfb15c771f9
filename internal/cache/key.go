package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"

	"github.com/sluice-gw/sluice/internal/openai"
)

// ignoredFields do not change the answer's content: transport (stream,
// stream_options: a cached entry replays either way) and the end-user tag.
// model is replaced by Key's model argument.
var ignoredFields = []string{"model", "stream", "stream_options", "user"}

// keyVersion is mixed into every key; bump it when normalisation changes so
// old entries are never read with a new meaning.
// v3: the endpoint path joined the key (an embeddings answer must never
// answer a chat request with the same body).
const keyVersion = "sluice-cache-v3"

// Scope is what, besides the request body, changes an answer and so is
// part of its key.
type Scope struct {
	// Path is the endpoint (/v1/chat/completions, /v1/embeddings, ...):
	// the same body means different things on different endpoints.
	Path string
	// Model identifies the model that answers as the backends see it: the
	// pool's model with its backends' upstream_model rewrites, so a
	// rewrite to another model never replays the old model's answers.
	// Empty: the body's own "model".
	Model string
	// Tenant scopes the key unless Shared: tenants never read each
	// other's answers.
	Tenant string
	Shared bool
}

// Key returns the cache key of an OpenAI request body and whether the
// request is cacheable by default.
//
// The key is the hex SHA-256 of the normalised request: the body decoded
// and re-encoded with sorted object keys (so JSON whitespace and key order
// do not matter, and numbers are written canonically: 0, 0.0 and 0e0 are
// the same), without stream, stream_options and user, with the model
// replaced by s.Model (the body's own "model" when that is empty), and
// with the endpoint path and tenant of s (see Scope).
//
// cacheable is true only for deterministic requests: temperature 0 or a
// seed set, and n absent or 1. err is non-nil when body is not a JSON
// object; such a request is not cacheable.
func Key(body []byte, s Scope) (key string, cacheable bool, err error) {
	d, bodyModel, cacheable, err := Digest(body)
	if err != nil {
		return "", false, err
	}
	if s.Model == "" {
		s.Model = bodyModel
	}
	return KeyOf(d, s), cacheable, nil
}

// Digest is the SHA-256 of the normalised request without the fields that
// do not change the answer (see Key), the body's own model, and whether its
// sampling is deterministic. It depends on the body alone, so it can be
// remembered per body and combined with any tenant and model by KeyOf.
func Digest(body []byte) (d [sha256.Size]byte, model string, deterministicReq bool, err error) {
	if len(body) > maxCanonicalBody {
		return d, "", false, errors.New("cache: request body too large to key")
	}
	if !openai.ValidObject(body) {
		return d, "", false, errors.New("cache: request body is not one JSON object")
	}
	h := sha256.New()
	model, deterministicReq = canonicalDigest(body, h)
	h.Sum(d[:0])
	return d, model, deterministicReq, nil
}

// KeyOf is the cache key of a request with digest d in scope s.
func KeyOf(d [sha256.Size]byte, s Scope) string {
	h := sha256.New()
	kind, tenant := "tenant", s.Tenant
	if s.Shared {
		kind, tenant = "shared", ""
	}
	for _, part := range []string{keyVersion, kind, tenant, s.Path, s.Model} {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))]) // length-prefixed: no ambiguity
		h.Write([]byte(part))
	}
	h.Write(d[:])
	var sum [sha256.Size]byte
	var text [2 * sha256.Size]byte // encoded here: one allocation, the string
	hex.Encode(text[:], h.Sum(sum[:0]))
	return string(text[:])
}
