package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// LooksLikeJWT is the rule that tells a JWT from an API key when both are
// configured: a bearer with exactly two dots (header.payload.signature,
// the JWS compact form) is a JWT; anything else is an API key. API keys
// with two dots are refused by config validation while JWTs are on, so
// the rule never misreads a configured key.
func LooksLikeJWT(bearer string) bool { return strings.Count(bearer, ".") == 2 }

// header is what the gateway reads of a token before the signature
// library does: enough to refuse an algorithm outside the allow-list or a
// header it does not understand, without touching a key.
type header struct {
	Alg string
	Kid string
	// HasKid: the header names a key ("kid" present, a string).
	HasKid bool
}

// errMalformed is a token that is not a well-formed JWS compact
// serialization with a JSON header the gateway understands.
var errMalformed = errors.New("malformed token")

// maxHeaderBytes bounds the header segment: a real one (alg, kid, typ and
// perhaps a short x5t) is well under this.
const maxHeaderBytes = 1 << 10

// peekHeader decodes and checks the header of token, which the caller has
// already bounded in size: exactly three segments, each of base64url
// characters only, and a header that is a JSON object whose "alg" is a
// string, whose "kid" (if any) is a string, and that names no critical
// extension ("crit": RFC 7515 4.1.11 requires refusing what is not
// understood, and nothing here is).
func peekHeader(token string) (header, error) {
	first := strings.IndexByte(token, '.')
	if first < 0 || strings.Count(token, ".") != 2 {
		return header{}, errMalformed
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c != '.' && !isBase64URL(c) {
			return header{}, errMalformed
		}
	}
	seg := token[:first]
	if seg == "" || base64.RawURLEncoding.DecodedLen(len(seg)) > maxHeaderBytes {
		return header{}, errMalformed
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return header{}, errMalformed
	}
	var h struct {
		Alg  *string         `json:"alg"`
		Kid  json.RawMessage `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(raw, &h); err != nil || h.Alg == nil || *h.Alg == "" || h.Crit != nil {
		return header{}, errMalformed
	}
	out := header{Alg: *h.Alg}
	if h.Kid != nil {
		if err := json.Unmarshal(h.Kid, &out.Kid); err != nil {
			return header{}, errMalformed
		}
		out.HasKid = true
	}
	return out, nil
}

func isBase64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
