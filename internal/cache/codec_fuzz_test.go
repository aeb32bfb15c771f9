package cache

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func seedEntries() []*Entry {
	at := time.Unix(1_900_000_000, 5)
	return []*Entry{
		{Status: 200, ContentType: "application/json", Stored: at, Body: []byte(`{"id":"x","choices":[{"message":{"content":"hi"}}]}`)},
		{Status: 200, ContentType: "text/event-stream", Stored: at, Fresh: at.Add(time.Minute),
			Events: [][]byte{[]byte(`{"choices":[{"delta":{"content":"a"}}]}`), []byte(`{"choices":[],"usage":{"prompt_tokens":1}}`)}},
		{Status: 404, Body: []byte{}},
	}
}

// FuzzUnmarshalEntry: a value read back from Redis (stored input: it may
// be corrupt, truncated or from another version) decodes to an error or to
// an entry that replays safely (a status net/http accepts) and encodes back
// to the same bytes.
func FuzzUnmarshalEntry(f *testing.F) {
	for _, e := range seedEntries() {
		f.Add(marshalEntry(e))
	}
	f.Add([]byte{codecVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := unmarshalEntry(b)
		if err != nil {
			return
		}
		if e.Status < 100 || e.Status > 599 {
			t.Fatalf("status %d decoded: replaying it would panic in WriteHeader", e.Status)
		}
		if (e.Body == nil) == (e.Events == nil) {
			t.Fatalf("decoded entry has both or neither of body and events: %+v", e)
		}
		again, err := unmarshalEntry(marshalEntry(e))
		if err != nil || !reflect.DeepEqual(e, again) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, e, again)
		}
	})
}

func TestEntryCodecRoundTrip(t *testing.T) {
	for _, e := range seedEntries() {
		got, err := unmarshalEntry(marshalEntry(e))
		if err != nil || got.Status != e.Status || !got.Stored.Equal(e.Stored) || !bytes.Equal(got.Body, e.Body) || len(got.Events) != len(e.Events) {
			t.Fatalf("round trip of %+v: %+v, %v", e, got, err)
		}
	}
	for _, status := range []uint64{0, 99, 600, 1 << 40} {
		e := marshalEntry(&Entry{Status: 200, Body: []byte("{}")})
		bad := append([]byte{codecVersion}, appendUvarint(status)...)
		bad = append(bad, e[1+len(appendUvarint(200)):]...)
		if _, err := unmarshalEntry(bad); err == nil {
			t.Errorf("status %d decoded", status)
		}
	}
}

func appendUvarint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
