package app

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// consulAgent is a double of a Consul agent's documented health endpoint
// (none installs here; internal/discovery's tests hold the fuller one):
// GET /v1/health/service/<name>?passing answers the instances with
// X-Consul-Index, a query with `index` is held until a registration moves
// the index past it, and X-Consul-Token must be the token.
type consulAgent struct {
	mu      sync.Mutex
	index   uint64
	ports   []string // passing instances of "llm", on 127.0.0.1
	token   string
	down    bool // answer 500, as an agent without a leader
	changed chan struct{}
}

func (c *consulAgent) register(ports ...string) {
	c.change(func() { c.index++; c.ports = ports })
}

// change applies fn and wakes the held queries.
func (c *consulAgent) change(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn()
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *consulAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/health/service/llm" || !r.URL.Query().Has("passing") {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("X-Consul-Token") != c.token {
		http.Error(w, "ACL not found", http.StatusForbidden)
		return
	}
	index, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	for {
		c.mu.Lock()
		cur, changed, down := c.index, c.changed, c.down
		c.mu.Unlock()
		if down {
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
			return
		}
		if index == 0 || cur > index {
			break
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, p := range c.ports {
		port, _ := strconv.Atoi(p)
		out = append(out, map[string]any{"Node": map[string]any{"Node": "n", "Address": "127.0.0.1"},
			"Service": map[string]any{"Service": "llm", "Port": port}, "Checks": []map[string]any{{"Status": "passing"}}})
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(c.index, 10))
	json.NewEncoder(w).Encode(out)
}

// A model served from a Consul service: its passing instance serves; a
// registration that replaces it reaches the pool through the held
// blocking query; the token is read from token_file; an agent outage
// keeps the pool.
func TestConsulDiscoveredModelServes(t *testing.T) {
	b1, b2 := backend(t, "b1"), backend(t, "b2")
	port := func(s *httptest.Server) string {
		_, p, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
		return p
	}
	agent := &consulAgent{index: 5, ports: []string{port(b1)}, token: "t0ken", changed: make(chan struct{})}
	srv := httptest.NewServer(agent)
	defer srv.Close()

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "consul-token")
	if err := os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sluice.yaml")
	src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false}\n" +
		"models:\n  - name: m1\n    discovery:\n      - type: consul\n        consul:\n          service: llm\n" +
		"          address: " + strings.TrimPrefix(srv.URL, "http://") + "\n          token_file: " + tokenFile + "\n"
	writeFile(t, path, src)
	a := newApp(t, path)
	url, _, cancel, stopped := runApp(t, a)
	defer func() { cancel(); <-stopped }()

	eventually(t, "the service's instance to serve", samePool(a, b1.URL))
	if code, body := chat(url, "m1"); code != 200 || !strings.Contains(body, `"b1"`) {
		t.Fatalf("%d %s", code, body)
	}
	agent.register(port(b2))
	eventually(t, "the new registration to replace the old", samePool(a, b2.URL))
	if code, body := chat(url, "m1"); code != 200 || !strings.Contains(body, `"b2"`) {
		t.Fatalf("%d %s", code, body)
	}

	// The agent fails: the pool keeps b2, the failure is counted.
	agent.change(func() { agent.down = true })
	eventually(t, "the failure counted", func() bool {
		return counterValue(t, a, "sluice_discovery_failures_total") >= 1
	})
	if code, body := chat(url, "m1"); code != 200 || !strings.Contains(body, `"b2"`) || !samePool(a, b2.URL)() {
		t.Fatalf("an agent outage changed the pool: %v; %d %s", poolURLs(a), code, body)
	}
}
