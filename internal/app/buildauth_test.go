package app

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// A static key file an auth.jwt.issuers entry cannot use is named by the
// entry's key path, the one in the file. Before: `sluice check` said
// "auth.jwt.public_keys[0].file: open ...", a key a several-issuer file
// does not have, whichever entry it was.
func TestIssuerKeyFileErrorNamesTheEntry(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	src := "models:\n  - name: m1\n    backends: [{url: \"http://127.0.0.1:1\"}]\n" +
		"auth:\n  jwt:\n    issuers:\n" +
		"      - {name: corp, issuer: https://c/, audience: s, hmac_secret: 0123456789abcdef0123456789abcdef, algorithms: [HS256]}\n" +
		"      - {name: partner, issuer: https://p/, audience: s, public_keys: [{file: " + filepath.Join(dir, "missing.pem") + "}]}\n"
	writeFile(t, path, src)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Check(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.HasPrefix(err.Error(), "auth.jwt.issuers[1].public_keys[0].file: open ") {
		t.Fatalf("check: %v, want auth.jwt.issuers[1].public_keys[0].file: open ...", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the cause is lost: %v", err)
	}
}
