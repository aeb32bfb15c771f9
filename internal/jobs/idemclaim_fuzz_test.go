package jobs

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FuzzDecodeClaim: a stored idempotency claim (this version's, one from
// before fingerprints, a KV marker, or anything else under the key)
// decodes to its value as the job id and its header's fingerprint, or,
// for a delete or purge marker, to ErrKeyDeleted with the marker's
// revision; it never panics.
func FuzzDecodeClaim(f *testing.F) {
	fp := requestFingerprint(Spec{Path: "/v1/chat/completions", Body: []byte(`{"model":"m"}`)})
	f.Add([]byte("job_1"), fp, "", "")     // this version's claim
	f.Add([]byte("job_1"), "", "", "")     // one from before fingerprints
	f.Add([]byte(""), "", "DEL", "")       // a KV delete marker
	f.Add([]byte(""), "", "PURGE", "")     // a KV purge marker
	f.Add([]byte(""), "", "", "MaxAge")    // a server's marker
	f.Add([]byte("\x00\xff"), "x", "", "") // damaged
	f.Fuzz(func(t *testing.T, data []byte, fp, op, reason string) {
		h := nats.Header{}
		if fp != "" {
			h.Set(fingerprintHeader, fp)
		}
		if op != "" {
			h.Set("KV-Operation", op)
		}
		if reason != "" {
			h.Set(jetstream.MarkerReasonHeader, reason)
		}
		e, err := decodeClaim(data, h, 7)
		marker := h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
		switch {
		case marker && (!errors.Is(err, jetstream.ErrKeyDeleted) || e.rev != 7 || e.id != "" || e.fp != ""):
			t.Fatalf("a marker decoded to %+v, %v; want ErrKeyDeleted at revision 7", e, err)
		case !marker && (err != nil || e.id != string(data) || e.fp != h.Get(fingerprintHeader) || e.rev != 7):
			t.Fatalf("a claim decoded to %+v, %v; want id %q fingerprint %q revision 7", e, err, data, h.Get(fingerprintHeader))
		}
	})
}
