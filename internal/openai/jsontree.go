package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// A JSON value as the wire converters hold it: *jsonObject, []any,
// string, json.Number (the number as spelt), bool or nil. Objects keep
// their members' order and every member, known or not, so what a backend
// sends that the converters do not name (a newer field, a server's own
// extension) passes through, in its place: the structs the converters
// used before dropped every member they did not declare.
type jsonObject struct {
	keys []string
	vals map[string]any
}

func newObject() *jsonObject { return &jsonObject{vals: map[string]any{}} }

func (o *jsonObject) get(k string) (any, bool) {
	v, ok := o.vals[k]
	return v, ok
}

// set replaces k's value, or appends k when absent.
func (o *jsonObject) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func (o *jsonObject) del(k string) {
	if _, ok := o.vals[k]; !ok {
		return
	}
	delete(o.vals, k)
	for i, key := range o.keys {
		if key == k {
			o.keys = append(o.keys[:i:i], o.keys[i+1:]...)
			return
		}
	}
}

// str is k's string value, ok false when k is absent or not a string.
func (o *jsonObject) str(k string) (string, bool) {
	s, ok := o.vals[k].(string)
	return s, ok
}

// obj is k's object value, nil when k is absent or not an object.
func (o *jsonObject) obj(k string) *jsonObject {
	v, _ := o.vals[k].(*jsonObject)
	return v
}

// reordered is a shallow copy of o with first's members first, in that
// order (absent ones skipped), then the others in o's order.
func (o *jsonObject) reordered(first ...string) *jsonObject {
	c := &jsonObject{keys: make([]string, 0, len(o.keys)), vals: make(map[string]any, len(o.vals))}
	for _, k := range first {
		if v, ok := o.vals[k]; ok {
			c.set(k, v)
		}
	}
	for _, k := range o.keys {
		if _, done := c.vals[k]; !done {
			c.set(k, o.vals[k])
		}
	}
	return c
}

// deepCopy copies v so that merging into the copy leaves v as it was.
func deepCopy(v any) any {
	switch v := v.(type) {
	case *jsonObject:
		c := &jsonObject{keys: append([]string(nil), v.keys...), vals: make(map[string]any, len(v.vals))}
		for k, x := range v.vals {
			c.vals[k] = deepCopy(x)
		}
		return c
	case []any:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = deepCopy(x)
		}
		return c
	}
	return v
}

var errNotObject = errors.New("not a JSON object")

// parseObject decodes data, one JSON object and nothing after it.
func parseObject(data []byte) (*jsonObject, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	v, err := decodeValue(d)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	o, ok := v.(*jsonObject)
	if !ok {
		return nil, errNotObject
	}
	return o, nil
}

func decodeValue(d *json.Decoder) (any, error) {
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := newObject()
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeValue(d)
				if err != nil {
					return nil, err
				}
				o.set(kt.(string), v) // a repeated key: the last wins, in the first's place
			}
			_, err := d.Token()
			return o, err
		case '[':
			a := []any{}
			for d.More() {
				v, err := decodeValue(d)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := d.Token()
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	}
	return t, nil
}

// appendJSON writes v. Strings are escaped as OpenAI's servers escape
// them (no HTML escaping of <, > and &, which encoding/json adds).
func appendJSON(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, v)
	case json.Number:
		return append(b, v...)
	case string:
		return appendString(b, v)
	case []any:
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, x)
		}
		return append(b, ']')
	case *jsonObject:
		b = append(b, '{')
		for i, k := range v.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendJSON(b, v.vals[k])
		}
		return append(b, '}')
	}
	panic(fmt.Sprintf("openai: no JSON for %T", v)) // only decodeValue's types are ever held
}

const hexDigit = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigit[c>>4], hexDigit[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029': // valid JSON, but not JavaScript source
			b = append(b, '\\', 'u', '2', '0', '2', hexDigit[r&0xf])
		default:
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
