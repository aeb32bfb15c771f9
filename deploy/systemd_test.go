package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The hardening the unit must keep: each line is checked as written.
var unitMust = []string{
	"DynamicUser=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=", "ProtectSystem=strict",
	"ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes", "StateDirectory=sluice",
	"SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
	"MemoryDenyWriteExecute=yes", "ProtectKernelTunables=yes", "RestrictNamespaces=yes",
}

// unitForVerify is the unit with ExecStart pointing at an executable that
// exists here (verify checks it), in a temporary directory.
func unitForVerify(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("systemd/sluice.service")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	lines := strings.Split(text, "\n")
	for _, want := range unitMust {
		found := false
		for _, l := range lines {
			found = found || strings.TrimSpace(l) == want
		}
		if !found {
			t.Errorf("sluice.service: no line %q", want)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "ExecStart=/usr/local/bin/sluice serve --config /etc/sluice/sluice.yaml\n") {
		t.Fatal("sluice.service: ExecStart is not `/usr/local/bin/sluice serve --config /etc/sluice/sluice.yaml`")
	}
	if !strings.Contains(text, "ExecReload=/usr/local/bin/sluice check --config /etc/sluice/sluice.yaml\nExecReload=/bin/kill -HUP $MAINPID\n") {
		t.Fatal("sluice.service: a reload does not run `sluice check` on the same file before its SIGHUP")
	}
	path := filepath.Join(t.TempDir(), "sluice.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/local/bin/sluice", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSystemdUnit runs `systemd-analyze verify` on the unit (any message
// fails: verify exits 0 on an unknown key, printing it) and scores its
// exposure offline with `systemd-analyze security`.
func TestSystemdUnit(t *testing.T) {
	unit := unitForVerify(t)
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd): the unit's lines were checked, not verified")
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Skipf("systemd-analyze security --offline is not available here (systemd < 250?): %v\n%s", err, lastLine(out))
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	// systemd's scale: 0 (locked down) to 10 (unprotected); below 2 is "OK".
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	if score >= 2 {
		t.Errorf("exposure %.1f, want below 2 (OK):\n%s", score, out)
	}
}
