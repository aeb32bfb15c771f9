package app

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// /status, on the admin listener, says what /readyz says on the public
// one (ready, what holds it: the issuer's key set here) and which uses of
// Redis are bypassed: the dashboard reads nothing else. Before, an
// operator looking at /status or the dashboard saw neither: the replica
// out of its load balancer and the rate limits answered by their failure
// mode looked like a healthy gateway.
func TestStatusSaysReadinessAndRedis(t *testing.T) {
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer issuer.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	redis := ln.Addr().String() // a Redis that is down
	ln.Close()
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	loadFile(t, path, "listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nforecast: {enabled: false}\n"+
		"auth:\n  jwt: {jwks_url: "+issuer.URL+"/jwks.json, issuer: https://idp.test/, audience: sluice}\n"+
		"rate_limits:\n  store: redis\n  redis: {addrs: ["+redis+"], failure_mode: open}\n  per_ip: {requests: \"rate=1000r/s burst=1000\"}\n"+
		"cache:\n  redis: {addrs: ["+redis+"]}\n"+
		"models:\n  - name: m1\n    backends:\n      - url: "+be.URL+"\n")
	a := newApp(t, path)
	defer a.release()
	pub := httptest.NewServer(a.Handler())
	defer pub.Close()
	admin := httptest.NewServer(a.AdminHandler())
	defer admin.Close()
	type doc struct {
		Readiness *struct {
			Ready      bool     `json:"ready"`
			WaitingFor []string `json:"waiting_for"`
			JWKS       string   `json:"jwks"`
		} `json:"readiness"`
		Redis *struct {
			RateLimits  string `json:"rate_limits"`
			Cache       string `json:"cache"`
			ResponseIDs string `json:"response_ids"`
		} `json:"redis"`
	}
	status := func() doc {
		t.Helper()
		resp, err := http.Get(admin.URL + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d doc
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := status()
	if d.Readiness == nil || d.Readiness.Ready || d.Readiness.JWKS != "unavailable" || d.Readiness.WaitingFor == nil {
		t.Fatalf("/status readiness = %+v, want not ready, jwks unavailable, waiting_for []", d.Readiness)
	}
	if d.Redis == nil || d.Redis.RateLimits == "" || d.Redis.Cache == "" {
		t.Fatalf("/status redis = %+v, want the rate limits' and the cache's", d.Redis)
	}
	// Calls that fail find Redis down: each request is rate limited and
	// looked up in the cache (deterministic, each a new one: no L1 hit),
	// both on the dead Redis.
	for i := 0; i < 20 && (d.Redis.RateLimits != "degraded" || d.Redis.Cache != "degraded"); i++ {
		resp, err := http.Post(pub.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m1","temperature":0,"messages":[{"role":"user","content":"hi `+strconv.Itoa(i)+`"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d = status()
	}
	if d.Redis.RateLimits != "degraded" || d.Redis.Cache != "degraded" {
		t.Fatalf("/status redis = %+v after 20 requests on a Redis that is down, want both degraded", d.Redis)
	}
}
