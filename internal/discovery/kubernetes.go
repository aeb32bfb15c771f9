package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// inClusterNamespace is where a pod finds its own namespace (the service
// account's mount).
const inClusterNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Kubernetes follows the EndpointSlices of a Service through a client-go
// shared informer (list, then watch; a watch that expires, 410 Gone, makes
// the informer list again, and the store keeps every slice until the new
// list replaces it), filtered on the label kubernetes.io/service-name,
// which the EndpointSlice controller puts on every slice of a Service.
//
// The backends are chosen as kube-proxy chooses (KEP-1669): the endpoints
// whose condition ready is true (unset counts as true, as the API says)
// and that are not terminating; when there is none, the terminating ones
// still serving (serving true, or unset and ready), so a Service whose
// every pod is being replaced (a single replica rolled, a Recreate
// rollout) keeps its old pods while they still answer. An endpoint that
// leaves the set is drained (no new requests, those in flight finish
// within shutdown_grace). Its URL is the endpoint's first address on the
// port named PortName in its slice, or on Port; with neither, the slice's
// only port. A pod in several slices (moving between slices, or a
// dual-stack Service's IPv4 and IPv6 slices of the same pods) is one
// backend: by its targetRef, at its IPv4 address when it has one.
//
// An empty set (every pod unready, the slices deleted, the Service scaled
// to zero) is reported as the cluster's truth, not a failure, once it has
// lasted kubeSettle: after a non-empty set it is held that long first (the
// sink told, when it is an UnsettledSink), and any set with a backend
// that comes meanwhile is reported at once instead, so a Service whose
// slices are deleted and made again (the Service re-created, a controller
// re-slicing) never empties the pool for the moment between. A failure
// to reach the API (unreachable, refusing connections, 403 for want of
// RBAC) is reported to the
// sink while the informer retries with backoff; the last set stands, and
// is reported again once the informer has listed after the failure, so
// the failure is seen to end.
type Kubernetes struct {
	Namespace  string // "" = the kubeconfig context's, or the pod's own in a cluster
	Service    string
	PortName   string
	Port       int
	Kubeconfig string // path; "" = in-cluster (the pod's service account)
	Template   Template
	// REST, when set, is used instead of Kubeconfig or the in-cluster
	// config (tests point it at their API server).
	REST *rest.Config
	// After is time.After (nil), injectable: the tests drive the hold of
	// an empty set.
	After func(time.Duration) <-chan time.Time
}

// kubeSettle is how long an empty set after a non-empty one is held
// before it is reported: the file source's settle, longer than the
// moment between a slice's deletion and its successor's creation, short
// enough that a Service really emptied is honoured within a second.
const kubeSettle = time.Second

// Run starts the informer and reports the set once the first list is in,
// then at every change, until ctx ends; the informer's goroutines end
// before Run returns.
func (k Kubernetes) Run(ctx context.Context, sink Sink) {
	lw, what, err := k.connect()
	if err != nil {
		// Nothing to retry: the fix is a config change and a reload.
		sink.Fail(fmt.Errorf("%s: %w", what, err))
		<-ctx.Done()
		return
	}
	// client-go logs through klog; the failures that matter reach the
	// sink, so its own lines are dropped rather than written to stderr.
	ctx = klog.NewContext(ctx, logr.Discard())

	w := &kubeWatch{what: what, sink: sink, changed: make(chan struct{}, 1)}
	if err := w.build(lw); err != nil { // only when the informer already runs: a bug
		sink.Fail(fmt.Errorf("%s: %w", what, err))
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.inf.RunWithContext(ctx) }()
	defer wg.Wait()

	select {
	case <-ctx.Done():
		return
	case <-w.reg.HasSyncedChecker().Done():
	}
	k.report(ctx, w)
}

// connect is the list and watch of the Service's EndpointSlices; what
// names the Service in failures (with its namespace once known).
func (k Kubernetes) connect() (lw *cache.ListWatch, what string, err error) {
	what = "kubernetes service " + k.Service
	cfg, ns, err := k.restConfig()
	if err != nil {
		return nil, what, err
	}
	what = fmt.Sprintf("kubernetes service %s/%s", ns, k.Service)
	lw, err = k.listWatch(cfg, ns)
	return lw, what, err
}

// kubeWatch is one Run's informer and what its handlers tell the report
// loop (report).
type kubeWatch struct {
	what string // the Service, as failures name it
	sink Sink
	inf  cache.SharedIndexInformer
	reg  cache.ResourceEventHandlerRegistration
	// changed is poked (poke) at every event, and when the API answers
	// again after a failure.
	changed chan struct{}
	// failed is set at a failure to list or watch; the next set is
	// reported even when unchanged, so the failure is seen to end.
	failed atomic.Bool
}

// poke tells the report loop the set may have changed.
func (w *kubeWatch) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// fail reports a failure to list or watch.
func (w *kubeWatch) fail(err error) {
	w.failed.Store(true)
	w.sink.Fail(fmt.Errorf("%s: %w", w.what, err))
}

// build makes the informer on lw, its handlers poking the loop and its
// list and watch failures reported.
func (w *kubeWatch) build(lw *cache.ListWatch) (err error) {
	w.inf = cache.NewSharedIndexInformerWithOptions(lw, &discoveryv1.EndpointSlice{},
		cache.SharedIndexInformerOptions{ObjectDescription: w.what})
	pokeWhenBack(lw, &w.failed, w.poke, w.fail)
	w.reg, err = w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.poke() },
		UpdateFunc: func(any, any) { w.poke() },
		DeleteFunc: func(any) { w.poke() },
	})
	if err != nil {
		return err
	}
	return w.inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		if ctx.Err() == nil && !benignWatchEnd(err) {
			w.fail(err)
		}
	})
}

// report sends the sink the set of the informer's store at every change
// until ctx ends: the first set, any set after a failure, a set that
// differs; an empty set after a non-empty one only once it held for
// kubeSettle (UnsettledSink is told meanwhile).
func (k Kubernetes) report(ctx context.Context, w *kubeWatch) {
	after := k.After
	if after == nil {
		after = time.After
	}
	var (
		last    []endpoint.Spec
		first   = true
		settle  <-chan time.Time // an empty set is held until it fires
		settled bool             // it fired: an empty set now is reported
	)
	for {
		set, err := k.specs(w.inf.GetStore().List())
		switch {
		case err != nil:
			w.sink.Fail(fmt.Errorf("%s: %w", w.what, err))
		case len(set) == 0 && len(last) > 0 && !settled:
			if settle == nil {
				settle = after(kubeSettle)
				if u, ok := w.sink.(UnsettledSink); ok {
					u.Unsettled(fmt.Errorf("%s: no ready or serving endpoint; the %d backends are kept for %s unless one comes back",
						w.what, len(last), kubeSettle))
				}
			}
		case w.failed.Swap(false) || first || !slices.Equal(set, last):
			first, last, settle = false, set, nil
			w.sink.Update(slices.Clone(set))
		default: // the same set again: any hold ends
			settle = nil
		}
		settled = false
		select {
		case <-ctx.Done():
			return
		case <-w.changed:
		case <-settle:
			settle, settled = nil, true
		}
	}
}

// pokeWhenBack makes the API answering a list or a watch after a failure
// (failed set) poke the loop: no event would when the store stays as it
// was (a Service with no slice before the outage and after it). The loop
// may so report the store before the list's changes reach it: the last
// set, which rebuilds nothing; the changes follow as events.
//
// And it reports (fail) a watch that cannot start for a reason the
// reflector retries by itself, with backoff, without a relist and without
// telling the watch error handler: a refused connection (the API server
// restarting, its load balancer gone) or a 429. Unreported, an API away
// for an hour showed nothing: no failure, no failing source.
func pokeWhenBack(lw *cache.ListWatch, failed *atomic.Bool, poke func(), fail func(error)) {
	list, watchFn := lw.ListWithContextFunc, lw.WatchFuncWithContext
	lw.ListWithContextFunc = func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		obj, err := list(ctx, o)
		if err == nil && failed.Load() {
			poke()
		}
		return obj, err
	}
	lw.WatchFuncWithContext = func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		w, err := watchFn(ctx, o)
		switch {
		case err == nil && failed.Load():
			poke()
		case err != nil && ctx.Err() == nil && (utilnet.IsConnectionRefused(err) || apierrors.IsTooManyRequests(err)):
			fail(err)
		}
		return w, err
	}
}

// benignWatchEnd tells the ends of a watch that are the protocol working
// (410 Gone: re-list; a closed stream: re-watch) from failures.
func benignWatchEnd(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// listWatch lists and watches the Service's slices in ns, by label,
// through a REST client that knows discovery.k8s.io/v1 only: the typed
// clientset's scheme registers every API group, which grew the binary by
// 26 MB instead of 11 for types never seen here.
func (k Kubernetes) listWatch(cfg *rest.Config, ns string) (*cache.ListWatch, error) {
	scheme := runtime.NewScheme()
	if err := discoveryv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath = "/apis"
	cfg.GroupVersion = &discoveryv1.SchemeGroupVersion
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	client, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return cache.NewFilteredListWatchFromClient(client, "endpointslices", ns, func(o *metav1.ListOptions) {
		o.LabelSelector = discoveryv1.LabelServiceName + "=" + k.Service
	}), nil
}

// restConfig is how to reach the API and the namespace to look in: REST,
// the kubeconfig file, or the pod's service account.
func (k Kubernetes) restConfig() (*rest.Config, string, error) {
	ns := k.Namespace
	switch {
	case k.REST != nil:
		return k.REST, cmp.Or(ns, "default"), nil
	case k.Kubeconfig != "":
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: k.Kubeconfig}, &clientcmd.ConfigOverrides{})
		cfg, err := cc.ClientConfig()
		if err != nil {
			return nil, "", fmt.Errorf("kubeconfig %s: %w", k.Kubeconfig, err)
		}
		if ns == "" {
			if ns, _, err = cc.Namespace(); err != nil {
				return nil, "", fmt.Errorf("kubeconfig %s: %w", k.Kubeconfig, err)
			}
		}
		return cfg, ns, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, "", fmt.Errorf("in-cluster config (set kubeconfig outside a cluster): %w", err)
	}
	if ns == "" {
		b, err := os.ReadFile(inClusterNamespace)
		if err != nil {
			return nil, "", fmt.Errorf("the pod's namespace (set namespace): %w", err)
		}
		ns = strings.TrimSpace(string(b))
	}
	return cfg, ns, nil
}

// ErrNoPort: the Service has ready endpoints but none of its slices has
// the port asked for. A misconfiguration, reported as a failure: the last
// set stands rather than an empty pool.
var ErrNoPort = errors.New("no matching port")

// specs are the backends of objs (the informer's EndpointSlices), sorted,
// each URL once: the ready endpoints, or when there is none the
// terminating ones still serving; each pod once, at its IPv4 address when
// a dual-stack Service gives it two.
func (k Kubernetes) specs(objs []any) ([]endpoint.Spec, error) {
	scheme := cmp.Or(k.Template.Scheme, DefaultScheme)
	// best is, by pod (its targetRef; without one, the URL), the address
	// it is used at: the lowest (tier, family, URL).
	type choice struct {
		url          string
		tier, family int
	}
	best := map[string]choice{}
	portless := 0
	for _, o := range objs {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		port := k.portOf(s)
		family := familyRank(s.AddressType)
		for _, ep := range s.Endpoints {
			tier := tierOf(ep.Conditions)
			if tier < 0 || len(ep.Addresses) == 0 {
				continue
			}
			if port == 0 {
				portless++
				continue
			}
			// Every address of an endpoint is the same pod; the API
			// lets consumers use the first.
			u := scheme + "://" + net.JoinHostPort(ep.Addresses[0], strconv.Itoa(port))
			if p, err := url.Parse(u); err != nil || p.Hostname() != ep.Addresses[0] {
				continue // the API validates addresses; this one is not a host
			}
			key := "url " + u
			if r := ep.TargetRef; r != nil && r.Name != "" {
				key = "ref " + r.Kind + "/" + r.Namespace + "/" + r.Name
			}
			c := choice{url: u, tier: tier, family: family}
			if b, ok := best[key]; !ok || cmp.Or(cmp.Compare(c.tier, b.tier), cmp.Compare(c.family, b.family), strings.Compare(c.url, b.url)) < 0 {
				best[key] = c
			}
		}
	}
	top := 1
	for _, c := range best {
		top = min(top, c.tier)
	}
	out := []endpoint.Spec{}
	seen := map[string]bool{}
	for _, c := range best {
		if c.tier != top || seen[c.url] {
			continue
		}
		seen[c.url] = true
		spec := k.Template.Spec
		spec.URL = c.url
		out = append(out, spec.Normalized())
	}
	if len(out) == 0 && portless > 0 {
		return nil, fmt.Errorf("%w: %d ready endpoints, none with %s", ErrNoPort, portless, k.portWanted())
	}
	slices.SortFunc(out, func(a, b endpoint.Spec) int { return strings.Compare(a.URL, b.URL) })
	return out, nil
}

// tierOf ranks an endpoint as kube-proxy does (KEP-1669): 0 ready (unset
// is true) and not terminating; 1 terminating but still serving (serving
// unset defers to ready), used only when no endpoint is 0; -1 neither.
func tierOf(c discoveryv1.EndpointConditions) int {
	ready := c.Ready == nil || *c.Ready
	switch {
	case c.Terminating == nil || !*c.Terminating:
		if ready {
			return 0
		}
	case c.Serving != nil && *c.Serving, c.Serving == nil && ready:
		return 1
	}
	return -1
}

// familyRank orders a pod's addresses by the slice's type: IPv4, then
// IPv6, then FQDN (a dual-stack pod is reached at its IPv4 address, one
// backend, not two).
func familyRank(t discoveryv1.AddressType) int {
	switch t {
	case discoveryv1.AddressTypeIPv4:
		return 0
	case discoveryv1.AddressTypeIPv6:
		return 1
	}
	return 2
}

// portOf is the port number of the backends in s, 0 if s has none fit.
func (k Kubernetes) portOf(s *discoveryv1.EndpointSlice) int {
	if k.PortName == "" && k.Port > 0 {
		return k.Port
	}
	if k.PortName == "" {
		if len(s.Ports) == 1 {
			return validPort(s.Ports[0].Port)
		}
		return 0
	}
	for _, p := range s.Ports {
		if p.Name != nil && *p.Name == k.PortName {
			return validPort(p.Port)
		}
	}
	return 0
}

// validPort is *p when it is a TCP port number, else 0 (unset: the
// slice's endpoints have no such port).
func validPort(p *int32) int {
	if p == nil || *p < 1 || *p > 65535 {
		return 0
	}
	return int(*p)
}

func (k Kubernetes) portWanted() string {
	if k.PortName != "" {
		return fmt.Sprintf("a port named %q", k.PortName)
	}
	return "a single port (set port_name or port)"
}
