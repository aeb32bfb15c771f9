package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A JSON value as the wire converters hold it: *jsonObject, []any,
// string (or, while deltas are appended to it, *strings.Builder),
// json.Number (the number as spelt), bool or nil. Objects keep
// their members' order and every member, known or not, so what a backend
// sends that the converters do not name (a newer field, a server's own
// extension) passes through, in its place: the structs the converters
// used before dropped every member they did not declare.
type jsonObject struct {
	members []jsonMember
}

type jsonMember struct {
	key string
	val any
}

func newObject() *jsonObject { return &jsonObject{} }

// find is k's position, -1 when absent. Objects here have a few members:
// a scan costs less than a map.
func (o *jsonObject) find(k string) int {
	for i := range o.members {
		if o.members[i].key == k {
			return i
		}
	}
	return -1
}

func (o *jsonObject) get(k string) (any, bool) {
	if i := o.find(k); i >= 0 {
		return o.members[i].val, true
	}
	return nil, false
}

// val is k's value, nil when absent.
func (o *jsonObject) val(k string) any {
	v, _ := o.get(k)
	return v
}

// set replaces k's value, or appends k when absent.
func (o *jsonObject) set(k string, v any) {
	if i := o.find(k); i >= 0 {
		o.members[i].val = v
		return
	}
	o.members = append(o.members, jsonMember{k, v})
}

func (o *jsonObject) del(k string) {
	if i := o.find(k); i >= 0 {
		o.members = append(o.members[:i:i], o.members[i+1:]...)
	}
}

// str is k's string value, ok false when k is absent or not a string.
func (o *jsonObject) str(k string) (string, bool) {
	switch s := o.val(k).(type) {
	case string:
		return s, true
	case *strings.Builder: // being accumulated
		return s.String(), true
	}
	return "", false
}

// obj is k's object value, nil when k is absent or not an object.
func (o *jsonObject) obj(k string) *jsonObject {
	v, _ := o.val(k).(*jsonObject)
	return v
}

// reordered is a shallow copy of o with first's members first, in that
// order (absent ones skipped), then the others in o's order.
func (o *jsonObject) reordered(first ...string) *jsonObject {
	c := &jsonObject{members: make([]jsonMember, 0, len(o.members))}
	for _, k := range first {
		if v, ok := o.get(k); ok {
			c.members = append(c.members, jsonMember{k, v})
		}
	}
	for _, m := range o.members {
		if c.find(m.key) < 0 {
			c.members = append(c.members, m)
		}
	}
	return c
}

// deepCopy copies v so that merging into the copy leaves v as it was.
func deepCopy(v any) any {
	switch v := v.(type) {
	case *jsonObject:
		c := &jsonObject{members: make([]jsonMember, len(v.members))}
		for i, m := range v.members {
			c.members[i] = jsonMember{m.key, deepCopy(m.val)}
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

// parseObject decodes data, one JSON object and nothing after it. It
// checks the syntax first (json.Valid), then reads the values without
// checking again: a stream's thousand chunks are read at a fraction of
// encoding/json's token API's cost.
func parseObject(data []byte) (*jsonObject, error) {
	if !json.Valid(data) {
		return nil, errors.New("invalid JSON")
	}
	p := treeParser{b: data}
	p.space()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return nil, errNotObject
	}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	return v.(*jsonObject), nil
}

// treeParser reads valid JSON (json.Valid said so) into the tree.
type treeParser struct {
	b []byte
	i int
}

func (p *treeParser) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *treeParser) value() (any, error) {
	p.space()
	switch c := p.b[p.i]; c {
	case '{':
		p.i++
		o := &jsonObject{}
		for {
			p.space()
			if p.b[p.i] == '}' {
				p.i++
				return o, nil
			}
			if p.b[p.i] == ',' {
				p.i++
				p.space()
			}
			k, err := p.string()
			if err != nil {
				return nil, err
			}
			p.space()
			p.i++ // the colon
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			o.set(k, v) // a repeated key: the last wins, in the first's place
		}
	case '[':
		p.i++
		a := []any{}
		for {
			p.space()
			if p.b[p.i] == ']' {
				p.i++
				return a, nil
			}
			if p.b[p.i] == ',' {
				p.i++
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
	case '"':
		return p.string()
	case 't':
		p.i += 4
		return true, nil
	case 'f':
		p.i += 5
		return false, nil
	case 'n':
		p.i += 4
		return nil, nil
	}
	start := p.i
	for p.i < len(p.b) && strings.IndexByte("+-0123456789.eE", p.b[p.i]) >= 0 {
		p.i++
	}
	return json.Number(p.b[start:p.i]), nil
}

// string reads the string at p.i: its bytes as they are when it has no
// escape, else decoded by encoding/json.
func (p *treeParser) string() (string, error) {
	start := p.i
	p.i++
	escaped := false
	for ; p.b[p.i] != '"'; p.i++ {
		if p.b[p.i] == '\\' {
			escaped = true
			p.i++
		}
	}
	p.i++
	raw := p.b[start:p.i]
	if !escaped && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
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
	case *strings.Builder:
		return appendString(b, v.String())
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
		for i, m := range v.members {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, m.key)
			b = append(b, ':')
			b = appendJSON(b, m.val)
		}
		return append(b, '}')
	}
	panic(fmt.Sprintf("openai: no JSON for %T", v)) // only treeParser's types are ever held
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
