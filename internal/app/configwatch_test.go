package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A Kubernetes ConfigMap update, as the kubelet makes it: the config is
// a link through "..data" to a timestamped directory, and an update
// writes a new directory and renames a new "..data" link over the old.
// No event names the config file itself; before, the watch never saw
// the update (a SIGHUP was needed).
func TestReloadOnConfigMapSwap(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	dir := t.TempDir()
	revision := func(name, model, url string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		src := fmt.Sprintf("listen: 127.0.0.1:0\nlog: {access: false}\nqueue: {enabled: false}\n%smodels:\n  - name: %s\n    backends:\n      - url: %s\n", noProbes, model, url)
		if err := os.WriteFile(filepath.Join(dir, name, "sluice.yaml"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	revision("..2026_12_05_20_00_00.000000001", "m1", a.URL)
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.Symlink(filepath.Join("..data", "sluice.yaml"), path); err != nil {
		t.Fatal(err)
	}
	url, _ := serveApp(t, newApp(t, path))
	if code, body := chat(url, "m1"); code != 200 || !strings.Contains(body, `"a"`) {
		t.Fatalf("before the update: %d %s", code, body)
	}

	revision("..2026_12_05_20_05_00.000000002", "m2", b.URL)
	if err := os.RemoveAll(filepath.Join(dir, "..2026_12_05_20_00_00.000000001")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ConfigMap's new revision to serve m2", func() bool {
		code, body := chat(url, "m2")
		return code == 200 && strings.Contains(body, `"b"`)
	})

	// A second update is seen too: the watch follows the new revision.
	revision("..2026_12_05_20_10_00.000000003", "m3", a.URL)
	eventually(t, "the third revision to serve m3", func() bool {
		code, _ := chat(url, "m3")
		return code == 200
	})
}

// A config file that is a link to a file in another directory is
// reloaded when that file is rewritten in place (an editor, a deploy
// tool writing the real file): before, only events on the link's own
// name were followed.
func TestReloadThroughLinkToAnotherDirectory(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	real := filepath.Join(t.TempDir(), "real.yaml")
	writeConfig(t, real, "m1", a.URL)
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	url, _ := serveApp(t, newApp(t, path))
	if code, body := chat(url, "m1"); code != 200 {
		t.Fatalf("before the change: %d %s", code, body)
	}
	writeConfig(t, real, "m2", b.URL)
	eventually(t, "the linked file's change to serve m2", func() bool {
		code, body := chat(url, "m2")
		return code == 200 && strings.Contains(body, `"b"`)
	})
}
