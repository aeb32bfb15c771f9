package app

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// A reload re-reads the file with serve's flags applied again: an
// overridden listen address, admin address and data directory are not
// changes, an overridden log level stays, and otherwise the file's
// log.level is applied at once. Settings only a restart applies are named
// in the log when a reload changes them.
func TestReloadKeepsFlagOverridesAndAppliesLogLevel(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	adminLine := "admin: {listen: 127.0.0.1:18001}\n"
	write := func(extra string) {
		t.Helper()
		src := "listen: 127.0.0.1:18000\n" + adminLine + "queue: {enabled: false, data_dir: /nonexistent/file-dir}\n" +
			extra + "models:\n  - name: m1\n    backends:\n      - url: " + be.URL + "\n"
		writeFile(t, path, src)
	}
	start := func(o Overrides) (*App, *slog.LevelVar, *logbuf.Buffer) {
		t.Helper()
		src := Source{Path: path, Overrides: o, LogLevel: new(slog.LevelVar)}
		cfg, err := src.Load()
		if err != nil {
			t.Fatal(err)
		}
		if err := src.LogLevel.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
			t.Fatal(err)
		}
		logs := &logbuf.Buffer{}
		a, err := New(cfg, src, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: src.LogLevel})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.release)
		return a, src.LogLevel, logs
	}

	write("log: {level: info, access: false}\n")
	a, level, logs := start(Overrides{Listen: "127.0.0.1:0", AdminListen: "off", DataDir: t.TempDir()})
	if c := a.gw.Runtime().Config; c.Listen != "127.0.0.1:0" || c.Admin.Listen != "off" || c.Queue.DataDir == "/nonexistent/file-dir" {
		t.Fatalf("overrides not applied at start: listen %q, admin %q, data_dir %q", c.Listen, c.Admin.Listen, c.Queue.DataDir)
	}
	write("log: {level: debug, access: false}\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if c := a.gw.Runtime().Config; c.Listen != "127.0.0.1:0" || c.Admin.Listen != "off" || c.Queue.DataDir == "/nonexistent/file-dir" {
		t.Fatalf("overrides lost on reload: listen %q, admin %q, data_dir %q", c.Listen, c.Admin.Listen, c.Queue.DataDir)
	}
	if out := logs.String(); strings.Contains(out, "need a restart") || strings.Contains(out, "changes need") {
		t.Fatalf("a reload that changed only log.level warned of a restart:\n%s", out)
	}
	if level.Level() != slog.LevelDebug || !strings.Contains(logs.String(), "log level changed") {
		t.Fatalf("log.level info -> debug on reload: level %v; log:\n%s", level.Level(), logs)
	}
	// Settings only a restart applies: named, and kept.
	write("log: {level: debug, access: false}\ncache: {max_bytes: 8MiB}\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, `need a restart`) || !strings.Contains(out, `keys=cache.max_bytes`) {
		t.Fatalf("cache.max_bytes changed without a warning:\n%s", out)
	}
	// admin.max_connections is applied by the reload
	// (TestAdminCapFollowsReload): no restart warning names it.
	adminLine = "admin: {listen: 127.0.0.1:18001, max_connections: 3}\n"
	write("log: {level: debug, access: false}\ncache: {max_bytes: 8MiB}\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); strings.Contains(out, "admin.max_connections") {
		t.Fatalf("admin.max_connections, applied on reload, named in a warning:\n%s", out)
	}

	// --log-level wins over the file's, reload after reload.
	adminLine = "admin: {listen: 127.0.0.1:18001}\n"
	write("log: {level: info, access: false}\n")
	b, level, _ := start(Overrides{LogLevel: "warn", DataDir: t.TempDir()})
	write("log: {level: debug, access: false}\n")
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelWarn {
		t.Fatalf("--log-level warn replaced by the file's on reload: %v", level.Level())
	}
}
