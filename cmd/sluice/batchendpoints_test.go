package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// --batch-webhooks takes bare URLs (every tenant) and TENANT=URL entries,
// those of one URL adding up; a URL's own '=' stays in it, and a URL
// both bare and scoped is refused (its events would go twice).
func TestBatchWebhooksFlag(t *testing.T) {
	got, err := batchEndpoints("https://ops.example/all?x=1, acme=https://a.example/h,initech=https://a.example/h,globex=https://g.example/h", false)
	want := []jobs.BatchEndpoint{{URL: "https://ops.example/all?x=1"},
		{URL: "https://a.example/h", Tenants: []string{"acme", "initech"}}, {URL: "https://g.example/h", Tenants: []string{"globex"}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v; want %+v", got, err, want)
	}
	for _, v := range []string{"https://a.example/h,acme=https://a.example/h", "=https://a.example/h", "https://a.example/h,https://a.example/h"} {
		if _, err := batchEndpoints(v, false); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}

// Each --batch-webhooks entry is checked as far as a worker, which has
// no auth section, can: its URL, a tenant's form as the gateway makes
// tenants (ip:, key:, jwt:), and a repeated entry; the error names the
// flag and the entry. Before, a tenant nobody can have (an IPv6 caller's
// full address where the gateway names its /64, a "key:" of the wrong
// length, an empty claim) made an endpoint that silently got nothing, a
// repeated entry was taken silently, and a bad URL was refused by the
// queue as "jobs: batch webhook endpoint: ..." with no flag or entry.
func TestBatchWebhooksFlagEntriesChecked(t *testing.T) {
	ok := "acme=https://a.example/h,ip:203.0.113.5=https://a.example/h,ip:2001:db8:1:2::/64=https://a.example/h," +
		"key:0123456789ab=https://a.example/h,jwt:team-7=https://a.example/h"
	if _, err := batchEndpoints(ok, false); err != nil {
		t.Fatalf("valid entries refused: %v", err)
	}
	if _, err := batchEndpoints("acme=http://127.0.0.1:9/h", true); err != nil {
		t.Fatalf("a loopback URL with --allow-private-webhooks refused: %v", err)
	}
	for _, c := range []struct{ v, want string }{
		{"acme=ftp://a.example/h", "want an absolute http or https URL"},
		{"acme=http://127.0.0.1:9/h", "--allow-private-webhooks allows it"},
		{"acme=https://a.example/h,acme=https://a.example/h", "listed twice"},
		{"ip:2001:db8:1:2::7=https://a.example/h", `"ip:2001:db8:1:2::/64"`},
		{"ip:2001:db8:1:2::/48=https://a.example/h", "IPv6 /64"},
		{"ip:::ffff:203.0.113.5=https://a.example/h", `"ip:203.0.113.5"`},
		{"ip:somehost=https://a.example/h", "IPv4 address or IPv6 /64"},
		{"key:0123=https://a.example/h", "12 lower-case hex digits"},
		{"key:0123456789AB=https://a.example/h", "12 lower-case hex digits"},
		{"jwt:=https://a.example/h", "a token's tenant"},
		{"jwt:ip:x=https://a.example/h", "a token's tenant"},
		{" =https://a.example/h", "want TENANT=URL"},
	} {
		_, err := batchEndpoints(c.v, false)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "--batch-webhooks: ") {
			t.Errorf("%q: %v; want an error naming the flag and saying %q", c.v, err, c.want)
		}
	}
}
