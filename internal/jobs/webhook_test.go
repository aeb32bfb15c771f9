package jobs

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/testutil/promtest"
)

// hookTarget is a loopback webhook receiver counting what it gets.
type hookTarget struct {
	*httptest.Server
	hits atomic.Int64
	got  chan *http.Request // every request, body read into bodies
	body chan []byte
}

func newHookTarget(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *hookTarget {
	h := &hookTarget{got: make(chan *http.Request, 16), body: make(chan []byte, 16)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		h.got <- r
		h.body <- b
		if answer != nil {
			answer(w, r)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func submitHooked(t *testing.T, s *Store, url string) *Job {
	t.Helper()
	sp := spec("acme")
	sp.Webhook = url
	j, _, err := s.Submit(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// With the defaults, a webhook to 127.0.0.1, or to a name resolving to
// it, is refused where it is dialled; the receiver sees nothing.
func TestWebhookToLoopbackRefusedByDefault(t *testing.T) {
	target := newHookTarget(t, nil)
	s, _ := newStore(t, func(o *Options) { o.WebhookSecret = []byte("s3cret") })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	port := target.URL[strings.LastIndex(target.URL, ":")+1:]
	submitHooked(t, s, target.URL+"/hook")
	submitHooked(t, s, "http://localhost:"+port+"/hook")
	eventually(t, "both webhooks to fail", func() bool { return s.Stats().WebhooksFailed == 2 })
	if n := target.hits.Load(); n != 0 {
		t.Fatalf("a loopback receiver got %d webhooks", n)
	}
	if s.Stats().WebhooksSent != 0 {
		t.Fatal("counted as sent")
	}
}

// A redirect is not followed: the signed body goes only where the
// client said, and a 3xx is a final answer.
func TestWebhookRedirectNotFollowed(t *testing.T) {
	elsewhere := newHookTarget(t, nil)
	target := newHookTarget(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/stolen", http.StatusTemporaryRedirect)
	})
	s, _ := newStore(t, func(o *Options) { o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	submitHooked(t, s, target.URL+"/hook")
	eventually(t, "the webhook to fail", func() bool { return s.Stats().WebhooksFailed == 1 })
	if n, m := target.hits.Load(), elsewhere.hits.Load(); n != 1 || m != 0 {
		t.Fatalf("target hit %d times (want 1), redirect target %d (want 0)", n, m)
	}
}

// A permanent refusal (400) is not retried; 503 is.
func TestWebhookPermanentRefusalNotRetried(t *testing.T) {
	refuses := newHookTarget(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) })
	var busy atomic.Int64
	flaky := newHookTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if busy.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	s, _ := newStore(t, func(o *Options) { o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	submitHooked(t, s, refuses.URL+"/hook")
	submitHooked(t, s, flaky.URL+"/hook")
	eventually(t, "one failure and one delivery", func() bool {
		st := s.Stats()
		return st.WebhooksFailed == 1 && st.WebhooksSent == 1
	})
	if n := refuses.hits.Load(); n != 1 {
		t.Fatalf("a 400 was tried %d times, want 1", n)
	}
	if n := flaky.hits.Load(); n != 2 {
		t.Fatalf("a 503 then 200 took %d attempts, want 2", n)
	}
}

// A receiver that hangs holds only its own queue: another destination's
// webhook is delivered while it hangs.
func TestWebhookSlowTargetDoesNotDelayOthers(t *testing.T) {
	release := make(chan struct{})
	var inflight, peak atomic.Int64
	slow := newHookTarget(t, func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	fast := newHookTarget(t, nil)
	s, _ := newStore(t, func(o *Options) { o.WebhookSecret, o.AllowPrivateWebhooks = []byte("s3cret"), true })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	for range 8 { // more than any fixed pool of senders would have
		submitHooked(t, s, slow.URL+"/hook")
	}
	select {
	case <-slow.got: // the slow receiver holds a delivery now
	case <-time.After(20 * time.Second):
		t.Fatal("the slow receiver got nothing")
	}
	j := submitHooked(t, s, fast.URL+"/hook")
	select {
	case r := <-fast.got:
		if r.Header.Get("webhook-id") != j.ID {
			t.Fatalf("webhook-id %q, want %s", r.Header.Get("webhook-id"), j.ID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the fast receiver waited for the slow one")
	}
	if n := peak.Load(); n != 1 {
		t.Fatalf("the slow receiver got %d concurrent deliveries, want 1 at a time", n)
	}
}

// The Standard Webhooks signature verifies as its reference libraries do
// it, with a whsec_ secret; the body carries the public job only.
func TestWebhookSignatureVerifies(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	target := newHookTarget(t, nil)
	s, _ := newStore(t, func(o *Options) { o.WebhookSecret, o.AllowPrivateWebhooks = []byte(secret), true })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	j := submitHooked(t, s, target.URL+"/hook")
	var r *http.Request
	select {
	case r = <-target.got:
	case <-time.After(20 * time.Second):
		t.Fatal("no webhook")
	}
	body := <-target.body
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	if id != j.ID {
		t.Fatalf("webhook-id %q, want %s", id, j.ID)
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Hour {
		t.Fatalf("webhook-timestamp %q", ts)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	ok := false
	for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
		if v, mac, _ := strings.Cut(sig, ","); v == "v1" && hmac.Equal([]byte(mac), []byte(want)) {
			ok = true
		}
	}
	if !ok {
		t.Fatalf("webhook-signature %q does not verify (want v1,%s)", r.Header.Get("webhook-signature"), want)
	}
	if strings.Contains(string(body), "acme") || strings.Contains(string(body), "/hook") {
		t.Fatalf("body leaks the tenant or the webhook: %s", body)
	}
}

// Without a secret nothing is sent: unsigned webhooks cannot be told from
// forgeries.
func TestWebhookWithoutSecretNotSent(t *testing.T) {
	target := newHookTarget(t, nil)
	s, _ := newStore(t, func(o *Options) { o.AllowPrivateWebhooks = true })
	var calls atomic.Int64
	startWorker(t, s, WorkerOptions{Executor: okExec(&calls)})
	submitHooked(t, s, target.URL+"/hook")
	eventually(t, "the webhook to fail", func() bool { return s.Stats().WebhooksFailed == 1 })
	if n := target.hits.Load(); n != 0 {
		t.Fatalf("an unsigned webhook was sent (%d)", n)
	}
}

func TestCheckWebhookURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://hooks.example.com/x": true, "http://8.8.8.8/x": true,
		"http://127.0.0.1:9/x": false, "http://[::1]/x": false, "http://localhost/x": false,
		"http://LOCALHOST./x": false, "http://a.localhost/x": false, "http://169.254.169.254/latest": false,
		"http://[fd00:ec2::254]/": false, "ftp://example.com/": false, "/relative": false,
		// IPv6 forms that carry 127.0.0.1, and trailing-dot and numeric hosts.
		"http://[::7f00:1]/": false, "http://[::127.0.0.1]/": false, "http://[64:ff9b:1::7f00:1]/": false,
		"http://[2002:7f00:1::1]/": false, "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/": false,
		"http://[fec0::1]/": false, "http://127.0.0.1./": false, "http://2130706433/": false,
		"http://0x7f.1/": false, "http://0177.0.0.1/": false, "http://hooks.example.com./x": true,
	} {
		if err := CheckWebhookURL(raw, false); (err == nil) != ok {
			t.Errorf("CheckWebhookURL(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
	if err := CheckWebhookURL("http://127.0.0.1/x", true); err != nil {
		t.Errorf("allowed private: %v", err)
	}
}

func FuzzCheckWebhookURL(f *testing.F) {
	for _, s := range []string{"https://hooks.example.com/x", "http://127.0.0.1/", "http://[::ffff:10.0.0.1]/",
		"http://localhost./", "http://[fe80::1%25eth0]/", "http://0x7f000001/", "http://[64:ff9b::7f00:1]/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if CheckWebhookURL(raw, false) != nil {
			return
		}
		// Accepted: an http(s) URL whose host is no internal literal.
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("accepted %q", raw)
		}
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil && netguard.InternalAddr(ip) {
			t.Fatalf("accepted internal %q", raw)
		}
		if CheckWebhookURL(raw, true) != nil {
			t.Fatalf("accepted without private targets but refused with them: %q", raw)
		}
	})
}

// Receivers that never answer fill the webhook queues to their bounds:
// 64 waiting per destination, 1,024 in all. The queued gauge reads what
// waits, and each webhook past a bound is kept out and counted by reason
// (not failed: it stays pending for the sweep).
// notify is the queues' only entry (a finished job with a webhook), so
// the test feeds it finished records directly rather than running 1,041
// jobs through the queue.
func TestWebhookQueuesAtTheirBoundsAreMeasured(t *testing.T) {
	stall := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	var targets []*hookTarget
	for range webhookMaxQueued/webhookPerHost + 1 {
		targets = append(targets, newHookTarget(t, stall))
	}
	reg := prometheus.NewRegistry()
	s, _ := newStore(t, func(o *Options) {
		o.WebhookSecret, o.AllowPrivateWebhooks, o.Registerer = []byte("s3cret"), true, reg
	})
	n := 0
	notify := func(h *hookTarget) {
		n++
		s.hooks.notify(&jobRecord{Job: Job{ID: "job_" + strconv.Itoa(n)}, Webhook: h.URL + "/hook"})
	}
	dropped := func(reason string) float64 {
		return promtest.Value(t, reg, "sluice_jobs_webhooks_dropped_total", reason)
	}
	for i, h := range targets[:len(targets)-1] {
		notify(h)
		select {
		case <-h.got: // its drain holds this one in delivery
		case <-time.After(20 * time.Second):
			t.Fatalf("receiver %d got nothing", i)
		}
		for range webhookPerHost {
			notify(h)
		}
		if i == 0 {
			notify(h) // the 65th waiting for one destination
			if d := dropped("destination_full"); d != 1 {
				t.Fatalf("dropped{destination_full} %v, want 1", d)
			}
		}
	}
	if q := promtest.Value(t, reg, "sluice_jobs_webhooks_queued", ""); q != webhookMaxQueued {
		t.Fatalf("queued %v, want %d", q, webhookMaxQueued)
	}
	if d := promtest.Value(t, reg, "sluice_jobs_webhook_destinations", ""); d != float64(len(targets)-1) {
		t.Fatalf("destinations %v, want %d", d, len(targets)-1)
	}
	notify(targets[len(targets)-1]) // a new destination, but 1,024 wait already
	if d := dropped("queue_full"); d != 1 {
		t.Fatalf("dropped{queue_full} %v, want 1", d)
	}
	if d, f := dropped("too_many_destinations")+dropped("shutting_down"), promtest.Value(t, reg, "sluice_jobs_webhooks_failed_total", ""); d != 0 || f != 0 {
		t.Fatalf("other drops %v (want 0), failed %v (want 0: the 2 kept out are pending, not given up)", d, f)
	}
	if l := promtest.Value(t, reg, "sluice_jobs_webhooks_queued_limit", ""); l != webhookMaxQueued {
		t.Fatalf("limit %v", l)
	}
	if h := targets[len(targets)-1].hits.Load(); h != 0 {
		t.Fatalf("the dropped webhook reached its receiver %d times", h)
	}
}
