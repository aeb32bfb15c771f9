package jobs

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeJob: a stored job record (any version, or damaged) decodes to
// an error or to a record whose public view encodes (the API serves it),
// and which survives an encode/decode round trip unchanged.
func FuzzDecodeJob(f *testing.F) {
	rec := jobRecord{Job: Job{ID: "job_1", Status: "completed", Path: "/v1/chat/completions", Model: "m1", Attempts: 1, CreatedAt: 1,
		Result: &Result{StatusCode: 200, Body: json.RawMessage(`{"id":"x"}`)}}, Tenant: "t", Webhook: "https://example.com/h", Seq: 3}
	b, _ := json.Marshal(rec)
	f.Add(b)
	f.Add([]byte(`{"job":{"id":"j","status":"failed","error":{"code":"x","message":"y"}},"tenant":"t","index":-1}`))
	f.Add([]byte(`{"job":{"result":{"status_code":200,"body":null}}}`))
	f.Add([]byte(`null`))
	ev, _ := json.Marshal(jobRecord{Job: Job{ID: "evt_1_2", Object: "event", Status: StatusSucceeded, FinishedAt: 5,
		WebhookState: &WebhookDelivery{Status: WebhookPending, NextAttemptAt: 65}}, Tenant: "t", Webhook: "https://example.com/h",
		HookOwner: "o", Event: &eventRecord{ID: "evt_1", Batch: "batch_1", Body: json.RawMessage(`{"object":"event"}`)}})
	f.Add(ev) // a batch event's delivery record (batchevent.go)
	keyed, _ := json.Marshal(jobRecord{Job: Job{ID: "job_2", Object: "job", Status: StatusQueued, Path: "/v1/chat/completions"},
		Tenant: "t", Fingerprint: requestFingerprint(Spec{Path: "/v1/chat/completions", Body: []byte(`{"model":"m"}`)})})
	f.Add(keyed) // a job submitted with an Idempotency-Key (its request's fingerprint)
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := decodeJobValue("k", v)
		if err != nil {
			return
		}
		if _, err := json.Marshal(r.job()); err != nil {
			t.Fatalf("the public view of a decoded record does not encode: %v", err)
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		again, err := decodeJobValue("k", out)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		// RawMessage keeps the bytes as written; compare re-encodings.
		out2, _ := json.Marshal(again)
		if string(out) != string(out2) && !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip changed the record:\n%s\n%s", out, out2)
		}
	})
}
