package discovery

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// consulDouble stands in for a Consul agent (none installs here). It
// follows the documented health endpoint, GET /v1/health/service/<name>:
// `passing` keeps instances whose checks all pass, every `tag` must be on
// an instance, `dc` picks the datacenter (default dc1), X-Consul-Token is
// checked when the double requires one (403 "ACL not found" otherwise), a
// known token without service:read gets its answers filtered to nothing
// with X-Consul-Results-Filtered-By-ACLs: true (as the health API docs
// say), and every answer carries X-Consul-Index, X-Consul-KnownLeader and
// X-Consul-LastContact. A query with `index` blocks
// while the index is at most that value, until a change moves it past,
// `wait` passes (Consul's default 5m, at most 10m), or the test expires
// it (as if the wait had passed: no wall clock in tests).
type consulDouble struct {
	srv      *httptest.Server
	requests chan consulRequest // every query, as it arrives
	expire   chan struct{}      // one value ends one held query

	mu        sync.Mutex
	index     uint64
	instances []consulInstance
	token     string // required when set
	unread    string // a known token without service:read: answers filtered
	down      bool   // answer 500, as an agent without a leader
	changed   chan struct{}
}

type consulInstance struct {
	Node, NodeAddr, Addr string
	Port                 int
	Tags                 []string
	DC                   string // "" = dc1
	Status               string // of its one check: passing, warning or critical
}

type consulRequest struct {
	Path  string
	Query url.Values
	Token string
}

func newConsulDouble(t *testing.T, index uint64, instances ...consulInstance) *consulDouble {
	return startConsulDouble(t, (*httptest.Server).Start, index, instances...)
}

// startConsulDouble is newConsulDouble with start picking HTTP (Start)
// or HTTPS (StartTLS).
func startConsulDouble(t *testing.T, start func(*httptest.Server), index uint64, instances ...consulInstance) *consulDouble {
	d := &consulDouble{requests: make(chan consulRequest, 64), expire: make(chan struct{}, 1),
		index: index, instances: instances, changed: make(chan struct{})}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(d.serve))
	start(d.srv)
	t.Cleanup(d.srv.Close)
	return d
}

// addr is the double's host:port.
func (d *consulDouble) addr() string { return d.srv.Listener.Addr().String() }

// change applies fn under the lock and wakes held queries; fn decides
// whether the index moves (a registry write) or not (an outage).
func (d *consulDouble) change(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn()
	close(d.changed)
	d.changed = make(chan struct{})
}

// register replaces the instances, as a catalog write: the index moves.
func (d *consulDouble) register(instances ...consulInstance) {
	d.change(func() { d.index++; d.instances = instances })
}

// request is the next query the double received.
func (d *consulDouble) request(t *testing.T) consulRequest {
	t.Helper()
	select {
	case r := <-d.requests:
		return r
	case <-time.After(wait):
		t.Fatal("no query reached the Consul double")
	}
	return consulRequest{}
}

func (d *consulDouble) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d.requests <- consulRequest{Path: r.URL.Path, Query: q, Token: r.Header.Get("X-Consul-Token")}
	name, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if r.Method != http.MethodGet || !ok || name == "" {
		http.NotFound(w, r)
		return
	}
	wait := 5 * time.Minute
	if s := q.Get("wait"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			http.Error(w, "Invalid wait time", http.StatusBadRequest)
			return
		}
		wait = min(v, 10*time.Minute)
	}
	var index uint64
	if s := q.Get("index"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			http.Error(w, "Invalid index", http.StatusBadRequest)
			return
		}
		index = v
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		d.mu.Lock()
		cur, down, changed, token, unread := d.index, d.down, d.changed, d.token, d.unread
		d.mu.Unlock()
		if got := r.Header.Get("X-Consul-Token"); token != "" && got != token && (unread == "" || got != unread) {
			http.Error(w, "ACL not found", http.StatusForbidden)
			return
		}
		if down {
			http.Error(w, "No cluster leader", http.StatusInternalServerError)
			return
		}
		if index == 0 || cur > index {
			break
		}
		select {
		case <-changed:
			continue
		case <-d.expire:
		case <-timer.C:
		case <-r.Context().Done():
			return
		}
		break
	}
	d.answer(w, name, q, r.Header.Get("X-Consul-Token"))
}

// answer writes the service's matching instances and the index.
func (d *consulDouble) answer(w http.ResponseWriter, name string, q url.Values, token string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	filtered := d.unread != "" && token == d.unread
	dc := q.Get("dc")
	if dc == "" {
		dc = "dc1"
	}
	out := []map[string]any{}
	for i, in := range d.instances {
		idc := in.DC
		if idc == "" {
			idc = "dc1"
		}
		if idc != dc || (q.Has("passing") && in.Status != "passing") {
			continue
		}
		if slices.ContainsFunc(q["tag"], func(tag string) bool { return !slices.Contains(in.Tags, tag) }) {
			continue
		}
		out = append(out, map[string]any{
			"Node":    map[string]any{"Node": in.Node, "Address": in.NodeAddr, "Datacenter": idc},
			"Service": map[string]any{"ID": name + "-" + strconv.Itoa(i), "Service": name, "Tags": in.Tags, "Address": in.Addr, "Port": in.Port},
			"Checks":  []map[string]any{{"Node": in.Node, "CheckID": "service:" + name, "Status": in.Status}},
		})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Consul-Index", strconv.FormatUint(d.index, 10))
	// As every answer of an endpoint with consistency modes: without
	// them the client library stops reading the headers there.
	w.Header().Set("X-Consul-KnownLeader", "true")
	w.Header().Set("X-Consul-LastContact", "0")
	if filtered && len(out) > 0 {
		out = out[:0]
		w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
	}
	json.NewEncoder(w).Encode(out)
}
