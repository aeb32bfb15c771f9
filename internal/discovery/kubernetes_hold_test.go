package discovery

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/discovery/kubetest"
)

// settleClock is a Kubernetes source's After: each hold's timer is a
// channel the test fires.
type settleClock struct{ timers chan chan time.Time }

func newSettleClock() *settleClock { return &settleClock{timers: make(chan chan time.Time, 4)} }

func (c *settleClock) after(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.timers <- ch
	return ch
}

// held waits for the source to hold an empty set (it tells the sink) and
// checks nothing was reported with it.
func held(t *testing.T, sink *chanSink, c *settleClock) chan time.Time {
	t.Helper()
	select {
	case <-sink.held:
	case <-time.After(kubeWait):
		t.Fatal("the empty set was not held")
	}
	timer := <-c.timers
	select {
	case set := <-sink.updates:
		t.Fatalf("a set %q reported with the hold", urls(set))
	default:
	}
	return timer
}

// A Service whose slices are deleted and made again (the Service
// re-created, the controller re-slicing) is a moment without a slice: the
// pool keeps its backends through it, and the new set comes as one
// change. A Service that stays empty past kubeSettle is honoured.
func TestKubernetesEmptySetHeldBriefly(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}, kubetest.Endpoint{Addr: "10.0.0.2"}))
	clock := newSettleClock()
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http", After: clock.after})
	nextSet(t, sink, "http://10.0.0.1:8000,http://10.0.0.2:8000")
	api.Request(t, "watch rv=")

	api.Remove(kubetest.Slice("vllm-a", "vllm", 8000))
	held(t, sink, clock)
	api.Put(kubetest.Slice("vllm-x7k2", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}, kubetest.Endpoint{Addr: "10.0.0.3"}))
	nextSet(t, sink, "http://10.0.0.1:8000,http://10.0.0.3:8000")

	// Every endpoint unready, for longer than the hold.
	api.Put(kubetest.Slice("vllm-x7k2", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1", Ready: kubetest.No()}))
	held(t, sink, clock) <- time.Now()
	nextSet(t, sink, "")
	// Empty after empty: nothing held, and back at once.
	api.Put(kubetest.Slice("vllm-x7k2", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}))
	nextSet(t, sink, "http://10.0.0.1:8000")
	if len(clock.timers) != 0 {
		t.Errorf("%d holds more than the two", len(clock.timers))
	}
}

// A rollout that replaces every pod at once (one replica, or Recreate):
// the old pod, terminating but still serving, keeps the pool until a new
// one is ready, as kube-proxy keeps it (KEP-1669); then the ready pod
// alone serves, the old one drained. The source starts mid-rollout (a
// gateway started or re-listing then), so the first set is the fallback.
func TestKubernetesRolloutKeepsServingTerminating(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	stopping := kubetest.Endpoint{Addr: "10.0.0.1", Pod: "vllm-old", Ready: kubetest.No(), Serving: kubetest.Yes(), Terminating: kubetest.Yes()}
	starting := kubetest.Endpoint{Addr: "10.0.0.2", Pod: "vllm-new", Ready: kubetest.No(), Serving: kubetest.No(), Terminating: kubetest.No()}
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, stopping, starting))
	clock := newSettleClock()
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http", After: clock.after})
	nextSet(t, sink, "http://10.0.0.1:8000")
	api.Request(t, "watch rv=")

	starting.Ready, starting.Serving = kubetest.Yes(), kubetest.Yes()
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, stopping, starting))
	nextSet(t, sink, "http://10.0.0.2:8000")
	// The new pod stops too, its successor not ready: it keeps serving.
	starting.Ready, starting.Terminating = kubetest.No(), kubetest.Yes()
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, starting,
		kubetest.Endpoint{Addr: "10.0.0.3", Pod: "vllm-next", Ready: kubetest.No(), Serving: kubetest.No(), Terminating: kubetest.No()}))
	// Once it stops serving, nothing does: the empty set, after the hold.
	starting.Serving = kubetest.No()
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, starting))
	held(t, sink, clock) <- time.Now()
	nextSet(t, sink, "")
}

// A dual-stack Service has an IPv4 and an IPv6 slice of the same pods:
// each pod is one backend (its max_concurrency counted once), at its IPv4
// address; an IPv6-only pod at its IPv6 one.
func TestKubernetesDualStackOneBackendPerPod(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	api.Put(kubetest.Slice("vllm-v4", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1", Pod: "a"}, kubetest.Endpoint{Addr: "10.0.0.2", Pod: "b"}))
	api.Put(kubetest.SliceV6("vllm-v6", "vllm", 8000, kubetest.Endpoint{Addr: "fd00::1", Pod: "a"}, kubetest.Endpoint{Addr: "fd00::2", Pod: "b"}))
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http"})
	nextSet(t, sink, "http://10.0.0.1:8000,http://10.0.0.2:8000")
	api.Request(t, "watch rv=")
	api.Put(kubetest.SliceV6("vllm-v6", "vllm", 8000, kubetest.Endpoint{Addr: "fd00::1", Pod: "a"},
		kubetest.Endpoint{Addr: "fd00::2", Pod: "b"}, kubetest.Endpoint{Addr: "fd00::3", Pod: "c"}))
	nextSet(t, sink, "http://10.0.0.1:8000,http://10.0.0.2:8000,http://[fd00::3]:8000")
}

// A 410 Gone whose history hid a re-slicing (the old slice deleted, a new
// one made, both events compacted away): the relist replaces the store
// with additions before deletions, so the set goes from the old slice's
// to the new one's without an empty set, or a hold, between.
func TestKubernetesRelistAfterReslicingNeverEmpty(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}))
	clock := newSettleClock()
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http", After: clock.after})
	nextSet(t, sink, "http://10.0.0.1:8000")
	api.Request(t, "watch rv=")
	api.PutQuietly(kubetest.Slice("vllm-b", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}, kubetest.Endpoint{Addr: "10.0.0.2"}))
	api.RemoveQuietly(kubetest.Slice("vllm-a", "vllm", 8000))
	api.Expire(true)
	nextSet(t, sink, "http://10.0.0.1:8000,http://10.0.0.2:8000")
	if len(clock.timers) != 0 || len(sink.held) != 0 {
		t.Error("the relist showed an empty set on the way")
	}
}

// The API server restarting: its port refuses connections. The reflector
// retries the watch by itself (backoff, no relist, no error handler); the
// source still reports the failure, keeps the set, and reports it again
// once the API answers, so the failure is seen to end.
func TestKubernetesRefusedConnectionsAreAFailure(t *testing.T) {
	api := kubetest.New(t, "llm", false)
	api.Put(kubetest.Slice("vllm-a", "vllm", 8000, kubetest.Endpoint{Addr: "10.0.0.1"}))
	sink := runKube(t, api, Kubernetes{Service: "vllm", PortName: "http"})
	nextSet(t, sink, "http://10.0.0.1:8000")
	api.Request(t, "watch rv=")

	api.SetRefusing(true)
	if err := nextFailure(t, sink, "the refused connection"); !strings.Contains(err.Error(), "connection refused") ||
		!strings.Contains(err.Error(), "llm/vllm") {
		t.Fatalf("failure %q, want the refused connection and the Service", err)
	}
	select {
	case set := <-sink.updates:
		t.Fatalf("a set %q reported while the API refused", urls(set))
	default:
	}
	api.SetRefusing(false)
	nextSet(t, sink, "http://10.0.0.1:8000")
}
