// Package kubetest is a double of the Kubernetes API server's
// EndpointSlice resource for tests: no API server installs on the build
// machines, and the fake clientset would bypass the client-go informer's
// real list, watch and re-list logic, which is what needs testing.
package kubetest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIServer is a double of the Kubernetes API server's EndpointSlice
// resource (discovery.k8s.io/v1) in one namespace, following the
// documented API ("API Concepts": efficient detection of changes, watch
// bookmarks, streaming lists, 410 Gone), because no API server installs
// here. It serves:
//   - list: GET .../endpointslices?labelSelector=k=v, the matching slices
//     with the collection's resourceVersion;
//   - watch: ?watch=true&resourceVersion=N, a stream of JSON watch events
//     (ADDED, MODIFIED, DELETED) for the changes after N, and BOOKMARK
//     events when allowWatchBookmarks=true; a watch from a version older
//     than the last compaction is answered 410 Gone (reason Expired);
//   - streaming lists (sendInitialEvents=true): the current objects as
//     ADDED events, then a BOOKMARK annotated k8s.io/initial-events-end,
//     when streaming is on; else 422, as a server without the WatchList
//     feature answers, and the client falls back to list then watch;
//   - a watch's timeoutSeconds: the server closes the stream cleanly once
//     it has passed (client-go asks for 5 to 10 minutes and watches again
//     from the last version it saw).
//
// The slices are what the EndpointSlice controller writes: each of one
// address type (a dual-stack Service has an IPv4 and an IPv6 slice for
// the same pods, "EndpointSlices" in the concepts docs), endpoints with
// their conditions and, when the test names the pod, a targetRef to it.
//
// The test changes the slices with put and remove (each a new
// resourceVersion and an event), or quietly (a change whose event is lost
// to compaction: only a re-list finds it); expire compacts the history;
// down answers every request with an error status.
type APIServer struct {
	srv       *httptest.Server
	gate      *gate
	ns        string
	streaming bool
	requests  chan string // "list", "watch rv=N", "gone rv=N", "watchlist rv=N", "watchlist refused", "refused"

	mu        sync.Mutex
	rv        int
	compacted int // a watch from a version below this is 410 Gone
	slices    map[string]*discoveryv1.EndpointSlice
	history   []event
	watchers  map[*watcher]bool
	down      int // status every request gets; 0 = serving
}

type event struct {
	rv    int
	typ   string
	slice *discoveryv1.EndpointSlice
}

type watcher struct {
	selector  string
	bookmarks bool
	lines     chan []byte
	end       chan struct{}
}

// New starts an API server with namespace ns (closed at the test's end).
// With streaming it serves streaming lists; without, it refuses them.
func New(t testing.TB, ns string, streaming bool) *APIServer {
	k := &APIServer{ns: ns, streaming: streaming, requests: make(chan string, 1024), rv: 100,
		slices: map[string]*discoveryv1.EndpointSlice{}, watchers: map[*watcher]bool{}}
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(k.serve))
	k.gate = newGate(t, k.srv.Listener)
	k.srv.Listener = k.gate
	k.srv.Start()
	t.Cleanup(func() {
		k.EndWatches()
		k.srv.Close()
	})
	return k
}

// Endpoint is one endpoint of a slice the test builds; an unset
// condition is left out of the object.
type Endpoint struct {
	Addr                        string
	Ready, Serving, Terminating *bool
	// Pod names the pod behind the endpoint (its targetRef, as the
	// controller writes it); "" leaves targetRef out, as a slice managed
	// by hand may.
	Pod string
}

// Yes and No are condition values.
func Yes() *bool { b := true; return &b }

// No: see Yes.
func No() *bool { b := false; return &b }

// Slice is an EndpointSlice of service with ports http (port) and
// metrics (9090).
func Slice(name, service string, port int32, eps ...Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		TypeMeta:    metav1.TypeMeta{Kind: "EndpointSlice", APIVersion: "discovery.k8s.io/v1"},
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range []struct {
		name string
		port int32
	}{{"metrics", 9090}, {"http", port}} {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: &p.name, Port: &p.port})
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.Addr},
			Conditions: discoveryv1.EndpointConditions{Ready: e.Ready, Serving: e.Serving, Terminating: e.Terminating}}
		if e.Pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: e.Pod}
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

// SliceV6 is Slice of address type IPv6: a dual-stack Service's second
// slice of the same pods.
func SliceV6(name, service string, port int32, eps ...Endpoint) *discoveryv1.EndpointSlice {
	s := Slice(name, service, port, eps...)
	s.AddressType = discoveryv1.AddressTypeIPv6
	return s
}

// Put adds or replaces s, with an event.
func (k *APIServer) Put(s *discoveryv1.EndpointSlice) { k.change(s, false, false) }

// PutQuietly adds or replaces s; its event is lost (compacted away).
func (k *APIServer) PutQuietly(s *discoveryv1.EndpointSlice) { k.change(s, false, true) }

// Remove deletes the slice named like s, with an event.
func (k *APIServer) Remove(s *discoveryv1.EndpointSlice) { k.change(s, true, false) }

// RemoveQuietly deletes the slice named like s; its event is lost.
func (k *APIServer) RemoveQuietly(s *discoveryv1.EndpointSlice) { k.change(s, true, true) }

func (k *APIServer) change(s *discoveryv1.EndpointSlice, del, quiet bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rv++
	s = s.DeepCopy()
	s.Namespace = k.ns
	for i := range s.Endpoints {
		if r := s.Endpoints[i].TargetRef; r != nil && r.Namespace == "" {
			r.Namespace = k.ns
		}
	}
	s.ResourceVersion = strconv.Itoa(k.rv)
	typ := "ADDED"
	switch {
	case del:
		typ = "DELETED"
		delete(k.slices, s.Name)
	case k.slices[s.Name] != nil:
		typ = "MODIFIED"
		k.slices[s.Name] = s
	default:
		k.slices[s.Name] = s
	}
	if quiet {
		return
	}
	ev := event{rv: k.rv, typ: typ, slice: s}
	k.history = append(k.history, ev)
	for w := range k.watchers {
		if matches(s, w.selector) {
			w.lines <- eventLine(ev.typ, ev.slice)
		}
	}
}

// Bookmark moves the collection's version on (other objects of the
// cluster changed) and tells the watches that asked for bookmarks.
func (k *APIServer) Bookmark() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rv++
	for w := range k.watchers {
		if w.bookmarks {
			w.lines <- k.bookmarkLine(nil)
		}
	}
	return k.rv
}

// Expire compacts the history: every version up to now is too old to
// watch from. With inStream the open watches get an ERROR event 410
// Expired (as etcd compaction reports it mid-watch); without, they are
// closed and the client's re-watch from its old version is answered 410.
func (k *APIServer) Expire(inStream bool) {
	k.mu.Lock()
	k.rv++
	k.compacted = k.rv
	k.history = nil
	if inStream {
		for w := range k.watchers {
			w.lines <- errorLine(http.StatusGone, metav1.StatusReasonExpired, "too old resource version")
		}
	}
	k.mu.Unlock()
	if !inStream {
		k.EndWatches()
	}
}

// SetDown makes every request get status (0: serve again); open watches
// end.
func (k *APIServer) SetDown(status int) {
	k.mu.Lock()
	k.down = status
	k.mu.Unlock()
	k.EndWatches()
}

// SetRefusing stops listening (true: every connection is refused, the
// open ones closed, as when the API server restarts) or listens again on
// the same address (false).
func (k *APIServer) SetRefusing(refuse bool) {
	if refuse {
		k.gate.stop()
		k.EndWatches()
		k.srv.CloseClientConnections()
		return
	}
	k.gate.listen()
}

// EndWatches closes every open watch stream.
func (k *APIServer) EndWatches() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for w := range k.watchers {
		close(w.end)
		delete(k.watchers, w)
	}
}

func (k *APIServer) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method != http.MethodGet || r.URL.Path != "/apis/discovery.k8s.io/v1/namespaces/"+k.ns+"/endpointslices" {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource")
		return
	}
	k.mu.Lock()
	if k.down != 0 {
		code := k.down
		k.mu.Unlock()
		k.log("refused")
		reason := metav1.StatusReasonServiceUnavailable
		if code == http.StatusForbidden {
			reason = metav1.StatusReasonForbidden
		}
		writeStatus(w, code, reason, fmt.Sprintf(`endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:%s:sluice" cannot list resource "endpointslices"`, k.ns))
		return
	}
	selector := q.Get("labelSelector")
	if q.Get("watch") != "true" && q.Get("watch") != "1" {
		list := discoveryv1.EndpointSliceList{TypeMeta: metav1.TypeMeta{Kind: "EndpointSliceList", APIVersion: "discovery.k8s.io/v1"},
			ListMeta: metav1.ListMeta{ResourceVersion: strconv.Itoa(k.rv)}}
		for _, s := range k.slices {
			if matches(s, selector) {
				list.Items = append(list.Items, *s)
			}
		}
		k.mu.Unlock()
		k.log("list")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
		return
	}
	k.watch(w, r, selector) // unlocks
}

// watch serves one watch stream; called with mu held.
func (k *APIServer) watch(w http.ResponseWriter, r *http.Request, selector string) {
	q := r.URL.Query()
	from, _ := strconv.Atoi(q.Get("resourceVersion"))
	var first [][]byte
	switch {
	case q.Get("sendInitialEvents") == "true" && !k.streaming:
		k.mu.Unlock()
		k.log("watchlist refused")
		writeStatus(w, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid,
			"ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled")
		return
	case q.Get("sendInitialEvents") == "true":
		for _, s := range k.slices {
			if matches(s, selector) {
				first = append(first, eventLine("ADDED", s))
			}
		}
		first = append(first, k.bookmarkLine(map[string]string{"k8s.io/initial-events-end": "true"}))
		k.log(fmt.Sprintf("watchlist rv=%s", q.Get("resourceVersion")))
	case from < k.compacted:
		k.mu.Unlock()
		k.log(fmt.Sprintf("gone rv=%d", from))
		writeStatus(w, http.StatusGone, metav1.StatusReasonExpired, "too old resource version: "+strconv.Itoa(from))
		return
	default:
		for _, ev := range k.history {
			if ev.rv > from && matches(ev.slice, selector) {
				first = append(first, eventLine(ev.typ, ev.slice))
			}
		}
		k.log(fmt.Sprintf("watch rv=%d", from))
	}
	wt := &watcher{selector: selector, bookmarks: q.Get("allowWatchBookmarks") == "true",
		lines: make(chan []byte, 256), end: make(chan struct{})}
	k.watchers[wt] = true
	k.mu.Unlock()
	// The server ends a watch at its timeoutSeconds (a clean end of the
	// stream, no ERROR event); none asked: it runs until ended.
	var timeout <-chan time.Time
	if secs, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && secs > 0 {
		t := time.NewTimer(time.Duration(secs) * time.Second)
		defer t.Stop()
		timeout = t.C
	}

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	for _, l := range first {
		w.Write(l)
	}
	w.(http.Flusher).Flush()
	for {
		select {
		case l := <-wt.lines:
			w.Write(l)
			w.(http.Flusher).Flush()
		case <-wt.end:
			// What was sent before the end is delivered before it, as
			// on a real connection.
			for {
				select {
				case l := <-wt.lines:
					w.Write(l)
				default:
					return
				}
			}
		case <-timeout:
			k.mu.Lock()
			delete(k.watchers, wt)
			k.mu.Unlock()
			return
		case <-r.Context().Done():
			k.mu.Lock()
			delete(k.watchers, wt)
			k.mu.Unlock()
			return
		}
	}
}

// URL is the server's address, a rest.Config's Host.
func (k *APIServer) URL() string { return k.srv.URL }

// Namespace is the one namespace it serves.
func (k *APIServer) Namespace() string { return k.ns }

// Request waits (up to a minute: the informer backs off between failed
// attempts) for a request whose description starts with want: "list",
// "watch rv=N", "gone rv=N" (a watch answered 410), "watchlist rv=N",
// "watchlist refused" or "refused". It
// returns the descriptions of the requests before it.
func (k *APIServer) Request(t testing.TB, want string) []string {
	t.Helper()
	var before []string
	timeout := time.After(time.Minute)
	for {
		select {
		case r := <-k.requests:
			if strings.HasPrefix(r, want) {
				return before
			}
			before = append(before, r)
		case <-timeout:
			t.Fatalf("no %q request; saw %q", want, before)
		}
	}
}

func (k *APIServer) log(s string) {
	select {
	case k.requests <- s:
	default:
	}
}

// bookmarkLine is a BOOKMARK event at the current version; called with mu
// held.
func (k *APIServer) bookmarkLine(annotations map[string]string) []byte {
	return eventLine("BOOKMARK", &discoveryv1.EndpointSlice{
		TypeMeta:   metav1.TypeMeta{Kind: "EndpointSlice", APIVersion: "discovery.k8s.io/v1"},
		ObjectMeta: metav1.ObjectMeta{ResourceVersion: strconv.Itoa(k.rv), Annotations: annotations}})
}

func matches(s *discoveryv1.EndpointSlice, selector string) bool {
	return selector == discoveryv1.LabelServiceName+"="+s.Labels[discoveryv1.LabelServiceName]
}

func eventLine(typ string, obj any) []byte {
	b, err := json.Marshal(struct {
		Type   string `json:"type"`
		Object any    `json:"object"`
	}{typ, obj})
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

func status(code int, reason metav1.StatusReason, msg string) metav1.Status {
	return metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code)}
}

func errorLine(code int, reason metav1.StatusReason, msg string) []byte {
	return eventLine("ERROR", status(code, reason, msg))
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(status(code, reason, msg))
}

// gate is the server's listener, able to stop listening (connections to
// its port refused) and listen again on the same address.
type gate struct {
	t      testing.TB
	addr   net.Addr
	closed chan struct{}

	mu     sync.Mutex
	cur    net.Listener  // nil while refusing
	opened chan struct{} // closed when it listens again
}

func newGate(t testing.TB, l net.Listener) *gate {
	return &gate{t: t, addr: l.Addr(), cur: l, closed: make(chan struct{}), opened: make(chan struct{})}
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		g.mu.Lock()
		l, opened := g.cur, g.opened
		g.mu.Unlock()
		if l == nil {
			select {
			case <-opened:
				continue
			case <-g.closed:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Accept()
		if err == nil {
			return c, nil
		}
		g.mu.Lock()
		moved := g.cur != l
		g.mu.Unlock()
		select {
		case <-g.closed:
			return nil, err
		default:
		}
		if !moved {
			return nil, err
		}
	}
}

func (g *gate) stop() {
	g.mu.Lock()
	l := g.cur
	g.cur, g.opened = nil, make(chan struct{})
	g.mu.Unlock()
	if l != nil {
		l.Close()
	}
}

func (g *gate) listen() {
	l, err := net.Listen("tcp", g.addr.String())
	if err != nil {
		g.t.Fatalf("listening again on %s: %v", g.addr, err)
	}
	g.mu.Lock()
	g.cur = l
	close(g.opened)
	g.mu.Unlock()
}

func (g *gate) Close() error {
	select {
	case <-g.closed:
	default:
		close(g.closed)
	}
	g.stop()
	return nil
}

func (g *gate) Addr() net.Addr { return g.addr }
