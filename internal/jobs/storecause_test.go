package jobs

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil/logbuf"
)

// The job store's warnings name the cause in a few stable words ("is a
// directory", "no space left on device"), as the probe's lines do; they
// had Go's text (`read /var/lib/sluice/sluice-stream-marks.json: is a
// directory`), which is kept in detail. Here the marks file is a
// directory, so the store cannot read its marks at start.
func TestStoreWarningNamesTheCause(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, storeMarksFile), 0o700); err != nil {
		t.Fatal(err)
	}
	var buf logbuf.Buffer
	e, err := StartEmbedded(EmbeddedOptions{Dir: dir, Port: -1, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.Shutdown()
	var found bool
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var line struct{ Msg, Error, Detail string }
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if !strings.HasPrefix(line.Msg, "job store: its stream marks are unreadable") {
			continue
		}
		found = true
		if line.Error != "is a directory" || !strings.Contains(line.Detail, storeMarksFile) {
			t.Errorf("error %q, detail %q; want \"is a directory\" and Go's text naming the file", line.Error, line.Detail)
		}
	}
	if !found {
		t.Fatalf("no \"stream marks are unreadable\" line:\n%s", buf.String())
	}
}
