package jobs

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzWebhookRetryAfter: whatever Retry-After a webhook receiver answers,
// the next attempt waits between 0 and an hour.
func FuzzWebhookRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "-1", "1e9", "Wed, 21 Oct 2015 07:28:00 GMT", " 5 ", "NaN", "0.5"} {
		f.Add(s)
	}
	now := time.Unix(1.7e9, 0)
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > time.Hour {
			t.Fatalf("Retry-After %q waits %v", v, d)
		}
	})
}

// FuzzDecodeBatchRecord: a stored batch record (any version, or damaged)
// decodes to an error or to a record whose public view encodes (the API
// serves it) and survives an encode/decode round trip unchanged.
func FuzzDecodeBatchRecord(f *testing.F) {
	exp := int64(1.7e9 + 86400)
	rec := batchRecord{Tenant: "t", Target: "completed", FilesAt: 1, Writer: &fileClaim{Owner: "o", Until: 5}, Batch: Batch{
		ID: "batch_1", Status: "in_progress", Endpoint: "/v1/chat/completions", CompletionWindow: "24h", CreatedAt: 1.7e9,
		ExpiresAt: &exp, RequestCounts: BatchCounts{Total: 3, Completed: 1}, Metadata: map[string]string{"k": "v"}}}
	b, err := json.Marshal(rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"batch":{"request_counts":{"total":-1},"metadata":{"a":null},"errors":{"data":[null]}},"writer":null}`))
	f.Add([]byte(`{"batch":null,"output_expires_after":9223372036854775807}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		var r batchRecord
		if json.Unmarshal(v, &r) != nil {
			return
		}
		if _, err := json.Marshal(r.batch()); err != nil {
			t.Fatalf("the public view of a decoded record does not encode: %v", err)
		}
		out, err := json.Marshal(&r)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		var again batchRecord
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		if out2, _ := json.Marshal(&again); string(out2) != string(out) {
			t.Fatalf("round trip changed the record:\n%s\n%s", out, out2)
		}
	})
}
