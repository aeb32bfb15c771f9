package app

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-gw/sluice/internal/config"
)

// The embedded queue's data directory has one owner: a second queue on it
// (another process, or another App in this one: flock locks belong to the
// open file) is refused before its NATS server starts on the same store,
// naming the directory, the key and the owner's pid; once the owner has
// closed, the next one opens it. The old code started the second server.
func TestEmbeddedQueueOneOwnerPerDataDir(t *testing.T) {
	c := config.Default().Queue
	c.DataDir, c.Workers, c.WorkerDisabled = t.TempDir(), 0, true
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func() (*jobQueue, error) {
		return openQueue(c, prometheus.NewRegistry(), log, func(string) bool { return true }, time.Now, uploadMemory{})
	}
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	second, err := open()
	if err == nil {
		second.Close()
		first.Close()
		t.Fatalf("a second queue opened on %s", c.DataDir)
	}
	for _, want := range []string{"queue.data_dir (or --data-dir) " + c.DataDir + " is in use",
		filepath.Join(c.DataDir, dataDirLockFile), "(pid " + strconv.Itoa(os.Getpid()) + ")", "queue.url"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	first.Close()
	next, err := open()
	if err != nil {
		t.Fatalf("after the owner closed: %v", err)
	}
	next.Close()
}

// A start refused for the data directory (another gateway holds it) says
// so without claiming the config file: the error began "config
// sluice.yaml:", the prefix of a refusal for what the file says, though
// no key of the file was at fault. A config error keeps the prefix.
func TestDataDirRefusalDoesNotBlameTheConfigFile(t *testing.T) {
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	dataDir := t.TempDir()
	writeFile(t, path, "listen: 127.0.0.1:0\nlog: {access: false}\nforecast: {enabled: false}\n"+noProbes+
		"queue: {data_dir: "+dataDir+", workers: 0}\n"+
		"models:\n  - name: m1\n    backends:\n      - url: "+be.URL+"\n")
	first := newApp(t, path) // holds the data directory's lock
	defer first.release()

	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := New(cfg, Source{Path: path}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		second.release()
		t.Fatalf("a second app started on %s", dataDir)
	}
	if msg := err.Error(); strings.Contains(msg, path) || !strings.HasPrefix(msg, "queue.data_dir (or --data-dir) "+dataDir+" is in use") {
		t.Errorf("refusal %q: want it to start with the key and directory, and not name the config file %s", msg, path)
	}
}
