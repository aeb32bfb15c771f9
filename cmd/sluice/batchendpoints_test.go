package main

import (
	"reflect"
	"testing"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// --batch-webhooks takes bare URLs (every tenant) and TENANT=URL entries,
// those of one URL adding up; a URL's own '=' stays in it, and a URL
// both bare and scoped is refused (its events would go twice).
func TestBatchWebhooksFlag(t *testing.T) {
	got, err := batchEndpoints("https://ops.example/all?x=1, acme=https://a.example/h,initech=https://a.example/h,globex=https://g.example/h")
	want := []jobs.BatchEndpoint{{URL: "https://ops.example/all?x=1"},
		{URL: "https://a.example/h", Tenants: []string{"acme", "initech"}}, {URL: "https://g.example/h", Tenants: []string{"globex"}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	for _, v := range []string{"https://a.example/h,acme=https://a.example/h", "=https://a.example/h", "https://a.example/h,https://a.example/h"} {
		if _, err := batchEndpoints(v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}
