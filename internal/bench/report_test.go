package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleResult(t *testing.T) *Result {
	t.Helper()
	srv := okServer(t)
	tenants := []Tenant{{Name: "alice", APIKey: "a", Share: 1}, {Name: "bob", APIKey: "b", Share: 3}}
	arr := AssignTenants(Constant(2000, 10*time.Millisecond, 10, 3), tenants)
	return runOK(t, Config{Target: srv.URL, Stream: true, Arrivals: arr, Tenants: tenants, SLOTTFT: time.Minute, SLOE2E: time.Minute, Label: "direct"})
}

func TestJSONRoundTrip(t *testing.T) {
	res := sampleResult(t)
	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("decode: %v\n%s", err, buf.String())
	}
	want := *res
	want.Records = nil // not part of the JSON
	if !reflect.DeepEqual(back, want) {
		t.Errorf("round trip changed the result:\n got %+v\nwant %+v", back, want)
	}
	for _, key := range []string{`"goodput"`, `"p99_ms"`, `"by_status"`, `"jain_index"`, `"tenants"`, `"generator_kept_up"`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestWriteText(t *testing.T) {
	res := sampleResult(t)
	var buf bytes.Buffer
	if err := res.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"sluice bench: direct", "offered 20", "200:20", "ttft", "itl", "e2e", "lag", "alice", "bob", "Jain", "X-Sluice-Backend"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if res.Tenants[0].Offered != 5 || res.Tenants[1].Offered != 15 {
		t.Errorf("shares 1:3 of 20: %d and %d", res.Tenants[0].Offered, res.Tenants[1].Offered)
	}
	if err := res.WriteText(failWriter{}); err == nil {
		t.Error("a write error was swallowed")
	}
}

func TestCompare(t *testing.T) {
	before := &Result{Offered: 1000, OK: 948, ErrorRate: 0.052, E2E: Summary{Count: 948, Mean: 1200}, TTFT: Summary{Count: 948, P99: 5400},
		Goodput: Goodput{SLOTTFTms: 2000, Count: 900, PerS: 15, Fraction: 0.9}}
	after := &Result{Offered: 1000, OK: 992, ErrorRate: 0.008, E2E: Summary{Count: 992, Mean: 300}, TTFT: Summary{Count: 992, P99: 180},
		Goodput: Goodput{SLOTTFTms: 2000, Count: 990, PerS: 16.5, Fraction: 0.99}}
	var buf bytes.Buffer
	if err := Compare(&buf, "direct vs sluice", before, after, "direct", "sluice"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"direct vs sluice", "direct", "sluice", "1.20s", "300ms", "5.2%", "0.8%", "5.40s", "180ms", "948 (94.8%)", "15.0/s (90.0%)", "ttft<=2.00s"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
