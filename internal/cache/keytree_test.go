package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// digestTree is Digest as it was until the canonicalizer (canon.go): the
// body decoded into Go values and encoded again. Kept as the reference
// the canonicalizer must match byte for byte (cache keys stay the same).
func digestTree(body []byte) (d [sha256.Size]byte, model string, deterministicReq bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var req map[string]any
	if err := dec.Decode(&req); err != nil {
		return d, "", false, fmt.Errorf("cache: request body: %w", err)
	}
	if req == nil {
		return d, "", false, errors.New("cache: request body is not a JSON object")
	}
	if len(bytes.Trim(body[dec.InputOffset():], " \t\r\n")) != 0 {
		return d, "", false, errors.New("cache: request body: data after the JSON object")
	}
	model, _ = req["model"].(string)
	deterministicReq = deterministic(req)
	for _, f := range ignoredFields {
		delete(req, f)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(canonical(req)); err != nil {
		return d, "", false, fmt.Errorf("cache: encode request: %w", err)
	}
	return sha256.Sum256(buf.Bytes()), model, deterministicReq, nil
}

// deterministic reports whether the sampling parameters make the answer
// repeatable: temperature 0 or a seed, and a single choice.
func deterministic(req map[string]any) bool {
	if n, ok := req["n"]; ok && n != nil {
		v, ok := number(n)
		if !ok || v != 1 {
			return false
		}
	}
	if t, ok := req["temperature"]; ok {
		if v, ok := number(t); ok && v == 0 {
			return true
		}
	}
	seed, ok := req["seed"]
	return ok && seed != nil
}

func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// canonical rewrites json.Numbers in place so equal values encode equally
// (1, 1.0 and 1e0 all become 1). Integers written without a fraction or
// exponent keep every digit (seeds can exceed float64 precision).
func canonical(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = canonical(e)
		}
	case []any:
		for i, e := range x {
			x[i] = canonical(e)
		}
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if s == "-0" {
				return json.Number("0")
			}
			return x
		}
		f, err := x.Float64()
		if err != nil { // out of float64 range: keep the literal
			return x
		}
		if f == 0 {
			f = 0 // -0.0
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
	}
	return v
}

// FuzzCanonicalMatchesTree holds Digest to the tree it replaced: the
// same digest, model and determinism for every body the tree accepts,
// and a refusal wherever the tree refuses.
func FuzzCanonicalMatchesTree(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}`,
		`{"b":[1,2.5,{"z":null,"a":true}],"a":"<&>","seed":123456789012345678901}`,
		`{"x":-0.0,"y":1e3,"z":-0,"w":1e400,"v":1e-400,"u":0.10000000000000001}`,
		`{"a":1,"a":{"b":2,"a":1,"b":3},"model":"x","model":"y","n":1.0,"n":2}`,
		`{"k":"\ud800\udc00\ud800 \udc00\ud800x \u0000\u001f\b\f\n\r\t\"\\\/ \u2028\u2029 \u00e9","\u00e9":1,"e":2}`,
		"{\"raw\":\"\xff\xfe\xc3 \xe2\x80\xa8 \x7f\"}",
		`{"d":{"c":{"b":{"a":{},"0":[]}, "a":[{"y":1,"x":2}]}},"n":null,"seed":null,"temperature":-0.0}`,
		` {"stream":true,"user":"u","stream_options":{},"model":1} `,
		`{} x`, `[1]`, `null`, `{"a":}`, `{"a":1}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		wd, wm, wdet, werr := digestTree(body)
		gd, gm, gdet, gerr := Digest(body)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%q: tree err %v, canonicalizer err %v", body, werr, gerr)
		}
		if werr != nil {
			return
		}
		if wd != gd || wm != gm || wdet != gdet {
			t.Fatalf("%q: tree (%x %q %v), canonicalizer (%x %q %v)", body, wd, wm, wdet, gd, gm, gdet)
		}
	})
}
