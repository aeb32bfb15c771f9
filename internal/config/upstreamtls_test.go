package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gw/sluice/internal/testutil/selfsigned"
)

// upstream_tls and a backend's own tls load their files at validation:
// a pair and a CA bundle that read are accepted and make the client
// config; every problem (a file that does not read, a bundle with no
// certificate, a certificate without its key, a key of another
// certificate, a version) reads FILE:LINE: key path: problem.
func TestUpstreamTLSBlocks(t *testing.T) {
	dir := t.TempDir()
	pair, other := selfsigned.New(t, 1), selfsigned.New(t, 2)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, cert, key := write("ca.pem", pair.Cert), write("cert.pem", pair.Cert), write("key.pem", pair.Key)
	otherKey, junk := write("other.key", other.Key), write("junk.pem", []byte("not pem\n"))
	missing := filepath.Join(dir, "missing.pem")

	good := "upstream_tls: {ca_file: " + ca + ", min_version: \"1.3\"}\n" +
		"models:\n  - name: m1\n    backends:\n      - url: https://10.0.0.1:8443\n" +
		"        tls: {ca_file: " + ca + ", cert_file: " + cert + ", key_file: " + key + ", server_name: vllm.internal}\n"
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	bt, err := LoadUpstreamTLS(*c.Models[0].Backends[0].TLS, "models[0].backends[0].tls")
	if err != nil || bt.Config.ServerName != "vllm.internal" || len(bt.Config.Certificates) != 1 || bt.Config.RootCAs == nil {
		t.Fatalf("backend tls: %+v %v", bt, err)
	}
	if d, _ := LoadUpstreamTLS(c.UpstreamTLS, "upstream_tls"); d.Config.MinVersion != tls.VersionTLS13 || d.Fingerprint == bt.Fingerprint {
		t.Fatalf("default tls: %+v", d)
	}

	backend := "models:\n  - name: m1\n    backends:\n      - url: https://10.0.0.1:8443\n        tls:\n"
	for name, tc := range map[string]struct{ yaml, want string }{
		"unreadable": {"upstream_tls:\n  ca_file: " + missing + "\n" + minimal,
			":2: upstream_tls.ca_file: cannot read " + missing + ": no such file or directory"},
		"bad pem": {backend + "          ca_file: " + junk + "\n",
			":6: models[0].backends[0].tls.ca_file: " + junk + " holds no PEM certificate"},
		"no key": {backend + "          cert_file: " + cert + "\n",
			":5: models[0].backends[0].tls.key_file: must be set with models[0].backends[0].tls.cert_file"},
		"no cert": {"upstream_tls: {key_file: " + key + "}\n" + minimal,
			":1: upstream_tls.cert_file: must be set with upstream_tls.key_file"},
		"mismatch": {backend + "          cert_file: " + cert + "\n          key_file: " + otherKey + "\n",
			":6: models[0].backends[0].tls.cert_file: " + cert + " with " + otherKey + ": private key does not match public key"},
		"version": {"upstream_tls: {min_version: \"1.1\"}\n" + minimal,
			`:1: upstream_tls.min_version: must be "1.2" or "1.3", got "1.1"`},
		"discovery": {"models:\n  - name: m1\n    discovery:\n      - type: file\n        path: t.yaml\n        tls: {ca_file: " + junk + "}\n",
			":6: models[0].discovery[0].tls.ca_file: " + junk + " holds no PEM certificate"},
		"shared host": {"models:\n  - name: m1\n    backends:\n      - url: https://10.0.0.1:8443/a\n      - url: https://10.0.0.1:8443/b\n" +
			"        tls: {server_name: x}\n",
			":6: models[0].backends[1].tls: backends at 10.0.0.1:8443 share one connection pool and must have the same tls"},
		"misspelt": {"upstream_tls: {cafile: x}\n" + minimal, ":1: upstream_tls.cafile: unknown key; did you mean ca_file?"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path+tc.want) {
			t.Errorf("%s: got %v\nwant %s%s", name, err, path, tc.want)
		}
	}
}
