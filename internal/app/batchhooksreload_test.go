package app

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/jobs"
)

// A reload changing queue.batch_webhooks applies them to the running
// queue: the restart-only warning no longer names them, the reload says
// they were applied, and the store sends the next batch ends to them.
// An endpoint the store refuses (an internal address, without
// allow_private_webhooks) refuses the whole reload and keeps the running
// endpoints. Before, the reload warned "these keys need a restart:
// queue.batch_webhooks" and the old endpoints went on receiving events.
func TestReloadAppliesBatchWebhooks(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	dataDir := t.TempDir()
	write := func(hooks string) {
		t.Helper()
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nforecast: {enabled: false}\n" +
			"queue: {data_dir: " + dataDir + ", webhook_secret: s3cret, batch_webhooks: " + hooks + "}\n" +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	write(`["https://hooks.example/all"]`)
	a, logs := newLoggedApp(t, path, Load)
	defer a.release()
	endpoints := func() []jobs.BatchEndpoint {
		a.jobsMu.Lock()
		defer a.jobsMu.Unlock()
		return a.jobs.store.BatchWebhooks()
	}

	write(`["https://hooks.example/all", {url: "https://hooks.example/acme", tenants: [acme]}]`)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if strings.Contains(out, "queue.batch_webhooks\"") || strings.Contains(out, "keys=queue.batch_webhooks") {
		t.Fatalf("queue.batch_webhooks named as needing a restart:\n%s", out)
	}
	if !strings.Contains(out, "queue.batch_webhooks applied") {
		t.Fatalf("the reload did not say the endpoints were applied:\n%s", out)
	}
	got := endpoints()
	if len(got) != 2 || got[1].URL != "https://hooks.example/acme" || len(got[1].Tenants) != 1 || got[1].Tenants[0] != "acme" {
		t.Fatalf("endpoints after the reload %+v", got)
	}

	write(`["http://127.0.0.1:9/hook"]`) // loopback: refused by the store (allow_private_webhooks off)
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "queue.batch_webhooks") {
		t.Fatalf("reload to an internal endpoint: %v, want refused naming queue.batch_webhooks", err)
	}
	if got := endpoints(); len(got) != 2 {
		t.Fatalf("a refused reload changed the endpoints to %+v", got)
	}
}

// A batch-event endpoint's tenant no caller can have is said at the start
// and at each reload (which is applied, "with warnings", and lists it for
// /status), with the file, line and key path. Before, nothing said it:
// the endpoint silently received nothing for that tenant.
func TestBatchWebhookTenantTypoSaidAtStartAndReload(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nforecast: {enabled: false}\n" +
		"auth: {require_key: true, keys: [{key: k1, tenant: acme}]}\n" +
		"queue: {data_dir: " + t.TempDir() + ", webhook_secret: s3cret, batch_webhooks: [{url: \"https://hooks.example/a\", tenants: [acmee]}]}\n" +
		"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
	writeFile(t, path, src)
	a, logs := newLoggedApp(t, path, Load)
	defer a.release()
	want := path + `:6: queue.batch_webhooks[0].tenants[0]: \"acmee\" is no tenant a caller can have`
	if n := strings.Count(logs.String(), want); n != 1 {
		t.Fatalf("the start said %q %d times, want once:\n%s", want, n, logs.String())
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); strings.Count(out, want) != 3 || !strings.Contains(out, "config reloaded with warnings") {
		t.Fatalf("the reload did not say it (its own line and in its warnings):\n%s", out)
	}
}

// A queue started without queue.webhook_secret cannot sign events: a
// reload adding the secret and endpoints applies neither, and names both
// as needing a restart.
func TestReloadOfBatchWebhooksWithoutSecretNeedsRestart(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	dataDir := t.TempDir()
	write := func(queue string) {
		t.Helper()
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nforecast: {enabled: false}\n" +
			"queue: {data_dir: " + dataDir + queue + "}\n" +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	write("")
	a, logs := newLoggedApp(t, path, Load)
	defer a.release()
	write(`, webhook_secret: s3cret, batch_webhooks: ["https://hooks.example/all"]`)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, `keys="queue.webhook_secret, queue.batch_webhooks"`) || strings.Contains(out, "batch_webhooks applied") {
		t.Fatalf("want both keys named as needing a restart, nothing applied:\n%s", out)
	}
	a.jobsMu.Lock()
	got := a.jobs.store.BatchWebhooks()
	a.jobsMu.Unlock()
	if len(got) != 0 {
		t.Fatalf("endpoints %+v applied to a queue that cannot sign them", got)
	}
}
