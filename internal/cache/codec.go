package cache

import (
	"encoding/binary"
	"errors"
	"time"
)

// codecVersion starts every encoded entry; an unknown version decodes as an
// error (a miss), so a format change never misreads old Redis values.
const codecVersion = 2

// marshalEntry encodes e for Redis: version, status, stored and fresh-until
// times (unix nanoseconds, 0 for none), content type, kind (0 body, 1 stream), then the body or the
// events, every byte string length-prefixed with a uvarint.
func marshalEntry(e *Entry) []byte {
	b := make([]byte, 0, e.Size())
	b = append(b, codecVersion)
	b = binary.AppendUvarint(b, uint64(e.Status))
	var ns int64 // 0: no time
	if !e.Stored.IsZero() {
		ns = e.Stored.UnixNano()
	}
	b = binary.AppendVarint(b, ns)
	ns = 0
	if !e.Fresh.IsZero() {
		ns = e.Fresh.UnixNano()
	}
	b = binary.AppendVarint(b, ns)
	b = appendBytes(b, []byte(e.ContentType))
	if e.IsStream() {
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(e.Events)))
		for _, ev := range e.Events {
			b = appendBytes(b, ev)
		}
		return b
	}
	b = append(b, 0)
	return appendBytes(b, e.Body)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorrupt = errors.New("cache: corrupt entry")

// unmarshalEntry decodes marshalEntry's output. The entry shares no memory
// with b's caller only if b is not reused; Redis values are fresh copies.
func unmarshalEntry(b []byte) (*Entry, error) {
	d := decoder{b: b}
	if d.byte() != codecVersion {
		return nil, errCorrupt
	}
	status := d.uvarint()
	if status < 100 || status > 599 { // replaying it would make WriteHeader panic
		return nil, errCorrupt
	}
	e := &Entry{Status: int(status)}
	if ns := d.varint(); ns != 0 {
		e.Stored = time.Unix(0, ns)
	}
	if ns := d.varint(); ns != 0 {
		e.Fresh = time.Unix(0, ns)
	}
	e.ContentType = string(d.bytes())
	switch d.byte() {
	case 0:
		e.Body = d.bytes()
		if e.Body == nil {
			e.Body = []byte{}
		}
	case 1:
		n := d.uvarint()
		if n > uint64(len(d.b)) { // each event takes at least one byte
			return nil, errCorrupt
		}
		e.Events = make([][]byte, 0, n)
		for range n {
			e.Events = append(e.Events, d.bytes())
		}
	default:
		return nil, errCorrupt
	}
	if d.err || len(d.b) != 0 {
		return nil, errCorrupt
	}
	return e, nil
}

type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.err = true
		return 0xff
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}
