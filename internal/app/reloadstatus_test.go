package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/gateway"
)

// Why the last reload was refused used to be only in the log line of the
// moment and in `sluice check`: /status (where an operator and the
// dashboard look) said nothing. Now its "config" says whether the file on
// disk is serving and the last refusal's time and message, with a value
// taken from the environment shown as its reference, never as the value
// (a refusal quotes what it refuses: a password would be echoed).
func TestStatusShowsTheLastRefusedReload(t *testing.T) {
	t.Setenv("SLUICE_TEST_SECRET", "S3cretValue")
	be := backend(t, "a")
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	writeConfig(t, path, "m1", be.URL)
	a := newApp(t, path)
	t.Cleanup(a.release)
	admin := httptest.NewServer(a.AdminHandler())
	defer admin.Close()
	status := func() gateway.ConfigStatus { return configStatus(t, admin.URL) }
	if s := status(); !s.LastReloadSuccessful || s.LastRefusal != nil || s.LoadedAt.IsZero() {
		t.Fatalf("at start: %+v", s)
	}
	bad := fmt.Sprintf("models:\n  - name: m1\n    backends:\n      - url: %s\nhealth:\n  fail_timeout: ${SLUICE_TEST_SECRET}\n", be.URL)
	writeFile(t, path, bad)
	err := a.Reload()
	if err == nil || !strings.Contains(err.Error(), "S3cretValue") {
		t.Fatalf("reload: %v (want a refusal quoting the value, as the log has it)", err)
	}
	s := status()
	if s.LastReloadSuccessful || s.LastRefusal == nil || s.LastRefusal.Time.IsZero() {
		t.Fatalf("after a refused reload: %+v", s)
	}
	msg := s.LastRefusal.Error
	if !strings.Contains(msg, "sluice.yaml:6: health.fail_timeout") || !strings.Contains(msg, "${SLUICE_TEST_SECRET}") || strings.Contains(msg, "S3cretValue") {
		t.Fatalf("refusal on /status: %q, want its file, line and key, and the variable named, not its value", msg)
	}
	writeConfig(t, path, "m2", be.URL)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if s := status(); !s.LastReloadSuccessful || s.LastRefusal == nil || s.LastRefusal.Error != msg || !s.LoadedAt.After(s.LastRefusal.Time) && !s.LoadedAt.Equal(s.LastRefusal.Time) {
		t.Fatalf("after an applied reload: %+v (want successful, the refusal kept)", s)
	}
}

// configStatus reads the config part of the admin listener's /status.
func configStatus(t *testing.T, admin string) gateway.ConfigStatus {
	t.Helper()
	resp, err := http.Get(admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct{ Config *gateway.ConfigStatus }
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc.Config == nil {
		t.Fatalf("/status: %v, config %v", err, doc.Config)
	}
	return *doc.Config
}
