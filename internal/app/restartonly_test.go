package app

import (
	"path/filepath"
	"strings"
	"testing"
)

// A reload that changes settings only a restart applies names each
// changed key, and only those: the applied ones in the same section are
// not named. Before, the line said "queue changes need a restart" (or
// forecast, or "cache.max_bytes and cache.redis" whichever changed), and
// a reload moving the Redis the Responses API ids live in said nothing.
func TestRestartOnlyWarningNamesTheKeys(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	dataDir, snapshot := t.TempDir(), filepath.Join(t.TempDir(), "forecast.snapshot")
	write := func(queue, forecast, extra string) {
		t.Helper()
		src := "listen: 127.0.0.1:0\n" + noProbes + "log: {access: false}\nqueue: {enabled: false, data_dir: " + dataDir + queue + "}\n" +
			"forecast: {snapshot: " + snapshot + forecast + "}\n" + extra +
			"models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	write("", "", "")
	a, logs := newLoggedApp(t, path, Load)
	defer a.release()

	write(", workers: 7", ", interval: 2m", "server: {idle_timeout: 77s, max_connections: 500}\n"+
		"cache: {redis: {addrs: [\"127.0.0.1:1\"], timeout: 70ms}}\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	want := `keys="queue.workers, forecast.interval, server.idle_timeout, cache.redis.addrs, cache.redis.timeout, cache.redis for the Responses API ids"`
	if !strings.Contains(out, want) {
		t.Fatalf("the restart-only keys changed, want %s in the log:\n%s", want, out)
	}
	if strings.Contains(out, "server.max_connections") {
		t.Fatalf("server.max_connections, applied on reload, named as needing a restart:\n%s", out)
	}
}
