package app

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// metricValue is the value of name's one unlabelled sample on admin's
// /metrics; -1 when it is absent.
func metricValue(t *testing.T, admin, name string) float64 {
	t.Helper()
	line := metric(t, admin, name+" ")
	if line == "" {
		return -1
	}
	v, err := strconv.ParseFloat(strings.TrimPrefix(line, name+" "), 64)
	if err != nil {
		t.Fatalf("%s: %q", name, line)
	}
	return v
}

// forwardedChat sends a chat request as the client at addr (through a
// trusted proxy) and returns its status.
func forwardedChat(t *testing.T, host, addr string) int {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+host+"/v1/chat/completions", strings.NewReader(`{"model":"m1","messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// The rate limiter's in-process buckets are keyed by what clients choose
// (here client addresses behind a trusted proxy): a flood of more distinct
// addresses than rate_limits.max_keys keeps at most that many buckets,
// every client still gets its answer, and /metrics shows the bound, the
// fill and the charged buckets dropped for room.
func TestRateLimitBucketsBoundedUnderDistinctClients(t *testing.T) {
	b := backend(t, "a")
	host, admin := startWireApp(t, b.URL, "auth: {trusted_proxies: [127.0.0.1]}\n"+
		"rate_limits: {max_keys: 64, per_ip: {requests: \"rate=1r/m burst=5 nodelay\"}}\n")
	const clients = 400
	for i := range clients {
		if st := forwardedChat(t, host, fmt.Sprintf("10.9.%d.%d", i/200, i%200+1)); st != http.StatusOK {
			t.Fatalf("client %d: status %d", i, st)
		}
	}
	if c := metricValue(t, admin, "sluice_ratelimit_buckets_capacity"); c != 64 {
		t.Fatalf("capacity %v, want 64", c)
	}
	if n := metricValue(t, admin, "sluice_ratelimit_buckets"); n < 1 || n > 64 {
		t.Errorf("%v buckets held after %d distinct clients, want 1..64", n, clients)
	}
	// Every bucket is charged for a minute: room for the newer ones came
	// from charged buckets, at least all but the bound's worth.
	if e := metricValue(t, admin, "sluice_ratelimit_buckets_evicted_total"); e < clients-64 {
		t.Errorf("%v charged buckets evicted, want at least %d", e, clients-64)
	}
}
