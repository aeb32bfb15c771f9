package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/rest"

	"github.com/sluice-gw/sluice/internal/discovery/kubetest"
	"github.com/sluice-gw/sluice/internal/endpoint"
)

// kubeWait bounds a wait on the informer; generous, as the informer backs
// off (0.8s doubling, jittered) between failed attempts on a busy machine.
const kubeWait = 60 * time.Second

// kubeSink never blocks the informer: an outage repeats its failure at
// every retry, and those past the buffer are dropped.
type kubeSink struct{ *chanSink }

func (s kubeSink) Fail(err error) {
	select {
	case s.fails <- err:
	default:
	}
}

// runKube runs a Kubernetes source against api (the real client-go
// informer, over HTTP) until the test ends.
func runKube(t *testing.T, api *kubetest.APIServer, k Kubernetes) *chanSink {
	t.Helper()
	k.REST = &rest.Config{Host: api.URL()}
	k.Namespace = api.Namespace()
	sink := newChanSink()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); k.Run(ctx, kubeSink{sink}) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return sink
}

// nextSet waits for the next set and checks its URLs.
func nextSet(t *testing.T, sink *chanSink, want string) []endpoint.Spec {
	t.Helper()
	select {
	case set := <-sink.updates:
		if got := urls(set); got != want {
			t.Fatalf("set %q, want %q", got, want)
		}
		return set
	case <-time.After(kubeWait):
		t.Fatalf("no update; want %q", want)
	}
	return nil
}

// downAndBack has the API answer 503 until the source reports the
// outage, then serve again: the next set must be want.
func downAndBack(t *testing.T, api *kubetest.APIServer, sink *chanSink, want string) {
	t.Helper()
	api.SetDown(503)
	nextFailure(t, sink, "the outage")
	api.SetDown(0)
	nextSet(t, sink, want)
}

// nextFailure is the source's next failure; none within kubeWait fails
// the test, saying what was not reported.
func nextFailure(t *testing.T, sink *chanSink, what string) error {
	t.Helper()
	select {
	case err := <-sink.fails:
		return err
	case <-time.After(kubeWait):
		t.Fatal(what + " was not reported")
	}
	return nil
}

// The Service's ready endpoints become backends on its named port (each
// slice says its number); slices of other Services are filtered out by
// label; added and deleted slices arrive by watch. Both ways the client
// gets the initial state are served: list then watch (a server without
// streaming lists answers their request 422), and a streaming list.
func TestKubernetesEndpointsAppear(t *testing.T) {
	for _, streaming := range []bool{false, true} {
		t.Run(fmt.Sprintf("streaming=%v", streaming), func(t *testing.T) {
			api := kubetest.New(t, "llm", streaming)
			api.Put(kubetest.Slice("vllm-a", "vllm", 8000,
				kubetest.Endpoint{Addr: "10.0.0.1", Ready: kubetest.Yes()},
				kubetest.Endpoint{Addr: "10.0.0.2"}, // ready unset: the API says it counts as ready
				kubetest.Endpoint{Addr: "10.0.0.3", Ready: kubetest.No()}))
			api.Put(kubetest.Slice("other-a", "other", 8000, kubetest.Endpoint{Addr: "10.0.9.9", Ready: kubetest.Yes()}))
			sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http",
				Template: Template{Scheme: "https", Spec: endpoint.Spec{Weight: 2, UpstreamModel: "llama"}}})
			set := nextSet(t, sink, "https://10.0.0.1:8000,https://10.0.0.2:8000")
			if set[0].Weight != 2 || set[0].UpstreamModel != "llama" {
				t.Errorf("template not applied: %+v", set[0])
			}
			// The informer's first requests: the streaming list, which
			// goes on as the watch; or its refusal, a list, a watch.
			first, want := "watchlist rv=", ""
			if !streaming {
				first, want = "watch rv=", "watchlist refused,list"
			}
			if before := api.Request(t, first); strings.Join(before, ",") != want {
				t.Errorf("requests before %q: %q, want %q", first, before, want)
			}

			api.Put(kubetest.Slice("vllm-b", "vllm", 8001, kubetest.Endpoint{Addr: "10.0.1.1", Ready: kubetest.Yes()}))
			nextSet(t, sink, "https://10.0.0.1:8000,https://10.0.0.2:8000,https://10.0.1.1:8001")
			api.Put(kubetest.Slice("other-b", "other", 8000, kubetest.Endpoint{Addr: "10.0.9.8", Ready: kubetest.Yes()}))
			api.Remove(kubetest.Slice("vllm-a", "vllm", 8000))
			nextSet(t, sink, "https://10.0.1.1:8001")
		})
	}
}

// Conditions: a backend whose pod fails its readiness probe leaves the
// set and comes back when ready; one whose pod terminates leaves it while
// still serving (the gateway drains it: no new requests, those in flight
// finish).
func TestKubernetesConditions(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	a := kubetest.Endpoint{Addr: "10.0.0.1", Ready: kubetest.Yes(), Serving: kubetest.Yes(), Terminating: kubetest.No()}
	b := kubetest.Endpoint{Addr: "10.0.0.2", Ready: kubetest.Yes(), Serving: kubetest.Yes(), Terminating: kubetest.No()}
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, a, b))
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http"})
	nextSet(t, sink, "http://10.0.0.1:8000,http://10.0.0.2:8000")

	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, a, kubetest.Endpoint{Addr: "10.0.0.2", Ready: kubetest.No(), Serving: kubetest.No(), Terminating: kubetest.No()}))
	nextSet(t, sink, "http://10.0.0.1:8000")
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, a, b))
	nextSet(t, sink, "http://10.0.0.1:8000,http://10.0.0.2:8000")
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1", Ready: kubetest.No(), Serving: kubetest.Yes(), Terminating: kubetest.Yes()}, b))
	nextSet(t, sink, "http://10.0.0.2:8000")
}

// A watch that expires (410 Gone: the history it asked for is compacted)
// makes the informer list again, and the list has the change whose event
// was lost. Mid-stream as an ERROR event, or as the answer to the re-watch
// from the last version seen (here a bookmark's); neither is a failure.
func TestKubernetesRelistAfterGone(t *testing.T) {
	for _, inStream := range []bool{true, false} {
		t.Run(fmt.Sprintf("in_stream=%v", inStream), func(t *testing.T) {
			api := kubetest.New(t, "llm", false)
			api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}))
			sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http"})
			nextSet(t, sink, "http://10.0.0.1:8000")
			api.Request(t, "watch rv=")
			rv := api.Bookmark()

			api.PutQuietly(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}, kubetest.Endpoint{Addr: "10.0.0.2"}))
			api.Expire(inStream)
			nextSet(t, sink, "http://10.0.0.1:8000,http://10.0.0.2:8000")
			if !inStream {
				api.Request(t, fmt.Sprintf("gone rv=%d", rv))
			}
			api.Request(t, "list")
			select {
			case err := <-sink.fails:
				t.Errorf("an expired watch reported as a failure: %v", err)
			default:
			}
		})
	}
}

// Bookmarks move the informer's version on: the stream closed (as the
// server does at the watch's timeout), it watches again from the
// bookmark's version, without a list.
func TestKubernetesBookmarks(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}))
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http"})
	nextSet(t, sink, "http://10.0.0.1:8000")
	api.Request(t, "watch rv=")
	rv := api.Bookmark()
	api.EndWatches()
	if before := api.Request(t, fmt.Sprintf("watch rv=%d", rv)); len(before) != 0 {
		t.Errorf("requests before the re-watch from the bookmark: %q, want none", before)
	}
}

// The API refusing (403: the RBAC is missing) is a failure that names
// the Service, and the last set stands; when the API serves again the
// informer lists and the set catches up.
func TestKubernetesOutageKeepsSet(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}, kubetest.Endpoint{Addr: "10.0.0.2"}))
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http"})
	nextSet(t, sink, "http://10.0.0.1:8000,http://10.0.0.2:8000")
	api.Request(t, "watch rv=")

	api.SetDown(403)
	if err := nextFailure(t, sink, "the outage"); !strings.Contains(err.Error(), "kubernetes service llm/vllm") || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("failure %q: want the service and the refusal named", err)
	}
	noUpdate(t, sink)
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.2"}, kubetest.Endpoint{Addr: "10.0.0.3"}))
	noUpdate(t, sink)
	api.SetDown(0)
	// The API answering again may first report the set the source
	// already had (the recovery; the manager rebuilds nothing for it),
	// then the listed one.
	if set := sink.next(t); urls(set) == "http://10.0.0.1:8000,http://10.0.0.2:8000" {
		nextSet(t, sink, "http://10.0.0.2:8000,http://10.0.0.3:8000")
	} else if got := urls(set); got != "http://10.0.0.2:8000,http://10.0.0.3:8000" {
		t.Fatalf("set after recovery %q", got)
	}
}

// The API down at start (503) is a failure and no set; once it serves,
// the set arrives. Down again later and back with nothing changed: the
// same set is reported again (the failure is seen to end). A slice whose
// endpoints are all unready and a deleted slice are both the cluster's
// truth: an empty set, reported.
func TestKubernetesDownAtStartAndRecovers(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}))
	api.SetDown(503)
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http"})
	if err := nextFailure(t, sink, "the API down at start"); !strings.Contains(err.Error(), "kubernetes service llm/vllm") {
		t.Errorf("failure %q: want the service named", err)
	}
	noUpdate(t, sink)
	api.SetDown(0)
	nextSet(t, sink, "http://10.0.0.1:8000")
	api.Request(t, "watch rv=")

	downAndBack(t, api, sink, "http://10.0.0.1:8000")
	api.Request(t, "watch rv=")

	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1", Ready: kubetest.No()}))
	nextSet(t, sink, "")
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}))
	nextSet(t, sink, "http://10.0.0.1:8000")
	api.Remove(kubetest.Slice("vllm-a", "vllm", 8000))
	nextSet(t, sink, "")
}

// A Service with no slice at all, the API down and back: the relist
// brings no event, yet the (empty) set is reported again, so the failure
// is seen to end.
func TestKubernetesEmptyServiceRecovers(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http"})
	nextSet(t, sink, "")
	api.Request(t, "watch rv=")
	downAndBack(t, api, sink, "")
}

// A kubeconfig that cannot be read is a failure naming it.
func TestKubernetesBadKubeconfig(t *testing.T) {
	sink := newChanSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Kubernetes{Service: "vllm", Kubeconfig: t.TempDir() + "/missing"}.Run(ctx, sink)
	}()
	if err := sink.failure(t, "kubeconfig"); !strings.Contains(err.Error(), "missing") {
		t.Errorf("failure %v", err)
	}
	cancel()
	<-done
}

// The mapping of slices to backends: ports by name, by number, or the
// only one; conditions; address families; each URL once.
func TestKubernetesSpecs(t *testing.T) {
	two := kubetest.Slice("s1", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"})
	terminatingReady := kubetest.Slice("s2", "vllm", 8000, // publishNotReadyAddresses keeps ready true
		kubetest.Endpoint{Addr: "10.0.0.2", Ready: kubetest.Yes(), Serving: kubetest.Yes(), Terminating: kubetest.Yes()})
	v6 := kubetest.Slice("s3", "vllm", 8000, kubetest.Endpoint{Addr: "fd00::7"})
	v6.AddressType = discoveryv1.AddressTypeIPv6
	dup := kubetest.Slice("s4", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}) // moving between slices
	one := kubetest.Slice("s5", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.5"})
	one.Ports = one.Ports[1:]
	terminatingGone := kubetest.Slice("s6", "vllm", 8000, // its readiness probe fails while it stops
		kubetest.Endpoint{Addr: "10.0.0.6", Ready: kubetest.No(), Serving: kubetest.No(), Terminating: kubetest.Yes()})
	// A dual-stack Service: an IPv4 and an IPv6 slice of the same pods
	// (p3 only in the IPv6 one: its IPv4 slice not yet written).
	dualV4 := kubetest.Slice("d4", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.1.1", Pod: "p1"}, kubetest.Endpoint{Addr: "10.0.1.2", Pod: "p2"})
	dualV6 := kubetest.SliceV6("d6", "vllm", 8000, kubetest.Endpoint{Addr: "fd00::1", Pod: "p1"},
		kubetest.Endpoint{Addr: "fd00::2", Pod: "p2"}, kubetest.Endpoint{Addr: "fd00::3", Pod: "p3"})
	for _, c := range []struct {
		name string
		k    Kubernetes
		objs []any
		want string
		err  error
	}{
		{"named port", Kubernetes{PortName: "metrics"}, []any{two}, "http://10.0.0.1:9090", nil},
		{"port number", Kubernetes{Port: 7000}, []any{two}, "http://10.0.0.1:7000", nil},
		{"the only port", Kubernetes{}, []any{one}, "http://10.0.0.5:8000", nil},
		{"several ports, none named", Kubernetes{}, []any{two}, "", ErrNoPort},
		{"no such name", Kubernetes{PortName: "grpc"}, []any{two}, "", ErrNoPort},
		{"terminating though ready, beside a ready one", Kubernetes{PortName: "http"}, []any{terminatingReady, two}, "http://10.0.0.1:8000", nil},
		{"terminating and serving, nothing ready", Kubernetes{PortName: "http"}, []any{terminatingReady, terminatingGone}, "http://10.0.0.2:8000", nil},
		{"terminating, not serving", Kubernetes{PortName: "http"}, []any{terminatingGone}, "", nil},
		{"dual-stack: each pod once, at IPv4", Kubernetes{PortName: "http"}, []any{dualV6, dualV4}, "http://10.0.1.1:8000,http://10.0.1.2:8000,http://[fd00::3]:8000", nil},
		{"ipv6, duplicates", Kubernetes{PortName: "http"}, []any{v6, two, dup}, "http://10.0.0.1:8000,http://[fd00::7]:8000", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			set, err := c.k.specs(c.objs)
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			if got := urls(set); err == nil && got != c.want {
				t.Fatalf("set %q, want %q", got, c.want)
			}
		})
	}
}

// Slices come from the API server as JSON: whatever decodes maps to
// backends whose URLs parse, on ports in range, or to a failure; never a
// panic.
func FuzzKubernetesSpecs(f *testing.F) {
	f.Add([]byte(`{"addressType":"IPv4","ports":[{"name":"http","port":8000}],"endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true}}]}`), "http", 0)
	f.Add([]byte(`{"addressType":"IPv6","ports":[{"port":8000}],"endpoints":[{"addresses":["fd00::1","fd00::2"]},{"addresses":[]}]}`), "", 0)
	f.Add([]byte(`{"addressType":"FQDN","ports":[{"name":"http"}],"endpoints":[{"addresses":["gpu-1.internal"],"conditions":{"terminating":true}}]}`), "http", 0)
	f.Add([]byte(`{"ports":[{"name":"a","port":1},{"name":"b","port":2}],"endpoints":[{"addresses":["x"]}]}`), "", 9000)
	f.Fuzz(func(t *testing.T, data []byte, portName string, port int) {
		var s discoveryv1.EndpointSlice
		if json.Unmarshal(data, &s) != nil {
			return
		}
		set, err := Kubernetes{PortName: portName, Port: port}.specs([]any{&s})
		if err != nil {
			return
		}
		for _, spec := range set {
			if _, err := url.Parse(spec.URL); err != nil {
				t.Fatalf("backend URL %q does not parse: %v", spec.URL, err)
			}
		}
	})
}

// The informer's goroutines are the source's: when its context ends, Run
// returns and none is left (connections the HTTP client keeps idle
// aside).
func TestKubernetesStopsWithContext(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}))
	ignore := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")}
	sink := newChanSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Kubernetes{Service: "vllm", PortName: "http", Namespace: api.Namespace(),
			REST: &rest.Config{Host: api.URL()}}.Run(ctx, kubeSink{sink})
	}()
	nextSet(t, sink, "http://10.0.0.1:8000")
	api.Request(t, "watch rv=")
	cancel()
	select {
	case <-done:
	case <-time.After(kubeWait):
		t.Fatal("Run did not return when its context ended")
	}
	goleak.VerifyNone(t, ignore...)
}
