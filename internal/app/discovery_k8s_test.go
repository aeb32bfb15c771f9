package app

import (
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gw/sluice/internal/discovery/kubetest"
)

// A model served from a Kubernetes Service, reached through a kubeconfig
// (its context names the namespace) at a double of the API server: a
// stream in flight on a pod that starts terminating runs to its end while
// new requests go to the ready pod; a 403 (RBAC withdrawn) keeps the pool
// and is counted.
func TestKubernetesDiscoveredTerminatingDrains(t *testing.T) {
	held, release := heldStream(t)
	b := backend(t, "b")
	api := kubetest.New(t, "inference", false)
	api.Put(kubetest.Slice("vllm-held", "vllm", portOf(t, held.URL), kubetest.Endpoint{Addr: "127.0.0.1"}))

	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, dir, api)
	path := filepath.Join(dir, "sluice.yaml")
	writeFile(t, path, "listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\nqueue: {enabled: false}\nshutdown_grace: 30s\n"+
		"models:\n  - name: m1\n    policy: round_robin\n    discovery:\n      - type: kubernetes\n        service: vllm\n"+
		"        port_name: http\n        kubeconfig: "+kubeconfig+"\n")
	a := newApp(t, path)
	gw, _, cancel, stopped := runApp(t, a)
	defer func() { cancel(); <-stopped }()
	rd := streamOnHeld(t, a, gw, held.URL)

	// The held pod is being deleted: still serving, terminating.
	api.Put(kubetest.Slice("vllm-held", "vllm", portOf(t, held.URL),
		kubetest.Endpoint{Addr: "127.0.0.1", Ready: kubetest.No(), Serving: kubetest.Yes(), Terminating: kubetest.Yes()}))
	api.Put(kubetest.Slice("vllm-b", "vllm", portOf(t, b.URL), kubetest.Endpoint{Addr: "127.0.0.1", Ready: kubetest.Yes()}))
	eventually(t, "the pool to be b only", samePool(a, b.URL))
	if code, body := chat(gw, "m1"); code != 200 || !strings.Contains(body, `"b"`) {
		t.Fatalf("a new request while the held pod terminates: %d %s", code, body)
	}
	if n := gaugeValue(t, a, "sluice_backends_draining"); n != 1 {
		t.Errorf("sluice_backends_draining = %v while the held stream runs, want 1", n)
	}
	close(release)
	rest, _ := io.ReadAll(rd)
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("stream cut when its pod began terminating: %q", rest)
	}

	api.SetDown(403)
	eventually(t, "the refusal counted", func() bool {
		return counterValue(t, a, "sluice_discovery_failures_total") >= 1
	})
	if !samePool(a, b.URL)() {
		t.Fatalf("an API refusal changed the pool: %v", poolURLs(a))
	}
}

func portOf(t *testing.T, raw string) int32 {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return int32(p)
}

// writeKubeconfig writes into dir a kubeconfig whose current context
// reaches api with the namespace inference, and returns its path.
func writeKubeconfig(t *testing.T, dir string, api *kubetest.APIServer) string {
	t.Helper()
	path := filepath.Join(dir, "kubeconfig")
	writeFile(t, path, "apiVersion: v1\nkind: Config\ncurrent-context: test\n"+
		"clusters: [{name: test, cluster: {server: \""+api.URL()+"\"}}]\n"+
		"users: [{name: test, user: {}}]\n"+
		"contexts: [{name: test, context: {cluster: test, user: test, namespace: inference}}]\n")
	return path
}

// A model whose only source has no backend to give, by fault (the API
// down at start: no set yet) or for real (every endpoint unready: an
// empty set, honoured), answers at once 503 no_healthy_backend with
// Retry-After, with the queue on as by default, never a held request;
// the first ready endpoint serves.
func TestKubernetesEmptyPoolAnswers503(t *testing.T) {
	b := backend(t, "b")
	api := kubetest.New(t, "inference", false)
	api.Put(kubetest.Slice("vllm-b", "vllm", portOf(t, b.URL), kubetest.Endpoint{Addr: "127.0.0.1", Ready: kubetest.No()}))
	api.SetDown(503)

	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, dir, api)
	path := filepath.Join(dir, "sluice.yaml")
	writeFile(t, path, "listen: 127.0.0.1:0\n"+noProbes+"log: {access: false}\n"+
		"models:\n  - name: m1\n    discovery:\n      - type: kubernetes\n        service: vllm\n"+
		"        port: "+strconv.Itoa(int(portOf(t, b.URL)))+"\n        kubeconfig: "+kubeconfig+"\n")
	a := newApp(t, path)
	gw, _, cancel, stopped := runApp(t, a)
	defer func() { cancel(); <-stopped }()

	refused := func(when string) {
		t.Helper()
		// The client's bound only catches a hang; the answer is at once.
		c := &http.Client{Timeout: time.Minute}
		resp, err := c.Post(gw+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m1","messages":[]}`))
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(string(body), "no_healthy_backend") {
			t.Fatalf("%s: %d Retry-After=%q %s, want 503 no_healthy_backend with Retry-After",
				when, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	eventually(t, "the outage counted", func() bool {
		return counterValue(t, a, "sluice_discovery_failures_total") >= 1
	})
	refused("API down at start")
	if n := gaugeValue(t, a, "sluice_discovery_sources_failing"); n != 1 {
		t.Errorf("sluice_discovery_sources_failing = %v while the API is down, want 1", n)
	}
	api.SetDown(0)
	eventually(t, "the empty set honoured", func() bool {
		return counterValue(t, a, "sluice_discovery_updates_total") >= 1
	})
	if n := gaugeValue(t, a, "sluice_discovery_sources_failing"); n != 0 {
		t.Errorf("sluice_discovery_sources_failing = %v once the API serves, want 0", n)
	}
	refused("every endpoint unready")
	api.Put(kubetest.Slice("vllm-b", "vllm", portOf(t, b.URL), kubetest.Endpoint{Addr: "127.0.0.1"}))
	eventually(t, "the pool to be b", samePool(a, b.URL))
	if code, body := chat(gw, "m1"); code != 200 {
		t.Fatalf("a ready endpoint: %d %s", code, body)
	}
}
