package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// UpstreamTLS is how Sluice speaks TLS to https:// backends (nginx
// proxy_ssl_trusted_certificate / proxy_ssl_certificate / proxy_ssl_name,
// Envoy's upstream TLS context). The top-level upstream_tls is every https
// backend's default; a backend's own tls (models[].backends[].tls, or a
// discovery source's template models[].discovery[].tls) replaces it as a
// whole, unset keys included. The zero value is Go's defaults: the system
// roots, the URL's host as the name, no client certificate, TLS 1.2 and up.
//
// Every file is read at start and again on every reload (SIGHUP, a change
// of the config file); one that fails to read or parse refuses the reload
// and the running settings keep serving. Paths are relative to the working
// directory. Plain http:// backends ignore it.
type UpstreamTLS struct {
	// CAFile is a PEM bundle of the certificate authorities a backend's
	// certificate must chain to. It replaces the system roots (as nginx's
	// proxy_ssl_trusted_certificate and curl --cacert do): a private CA
	// trusted for an internal backend is not also trusted for the public
	// internet, nor a public CA for the internal backend. Unset: the
	// system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate (PEM chain, leaf
	// first) and its private key, presented when a backend asks for one
	// (mTLS, a service mesh). Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is sent as SNI and is the name the backend's certificate
	// must carry; unset: the URL's host (an IP address is then checked
	// against the certificate's IP SANs).
	ServerName string `yaml:"server_name"`
	// MinVersion is the oldest protocol version offered: "1.2" (unset) or
	// "1.3", as tls.min_version.
	MinVersion string `yaml:"min_version"`
}

// Set reports whether any key is set (the zero value is Go's defaults).
func (t UpstreamTLS) Set() bool { return t != UpstreamTLS{} }

// BackendTLS is the material an UpstreamTLS names, read and parsed: the
// client side of a tls.Config, and a fingerprint of everything it was made
// from, so a reload that reads the same bytes keeps the same connections
// and one that reads a new CA or certificate opens new ones.
type BackendTLS struct {
	Config      *tls.Config
	Fingerprint string
}

// LoadUpstreamTLS reads t's files and builds its client tls.Config; key is
// the block's path (upstream_tls, models[0].backends[1].tls), which every
// error names with the offending key. Validation calls it to check the
// files; the runtime build calls it again for the material it serves with.
func LoadUpstreamTLS(t UpstreamTLS, key string) (*BackendTLS, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q\n", t.ServerName, t.MinVersion)
	cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if t.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &FieldError{Key: key + ".ca_file", Problem: fileProblem(err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &FieldError{Key: key + ".ca_file", Problem: fmt.Sprintf("%s holds no PEM certificate", t.CAFile)}
		}
		cfg.RootCAs = pool
		h.Write(pem)
	}
	if t.CertFile != "" && t.KeyFile != "" {
		certPEM, err := os.ReadFile(t.CertFile)
		if err != nil {
			return nil, &FieldError{Key: key + ".cert_file", Problem: fileProblem(err)}
		}
		keyPEM, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, &FieldError{Key: key + ".key_file", Problem: fileProblem(err)}
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, &FieldError{Key: key + ".cert_file", Problem: fmt.Sprintf("%s with %s: %s",
				t.CertFile, t.KeyFile, strings.TrimPrefix(err.Error(), "tls: "))}
		}
		cfg.Certificates = []tls.Certificate{pair}
		h.Write(certPEM)
		h.Write(keyPEM)
	}
	return &BackendTLS{Config: cfg, Fingerprint: hex.EncodeToString(h.Sum(nil))}, nil
}

// fileProblem says why a file did not read, without Go's "open" prefix.
func fileProblem(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Sprintf("cannot read %s: %v", pe.Path, pe.Err)
	}
	return err.Error()
}

// validate checks t's keys and, when they hang together, reads its files.
func (t UpstreamTLS) validate(bad badFunc, key string) {
	ok := true
	if t.MinVersion != "" && t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		bad(key+".min_version", `must be "1.2" or "1.3", got %q`, t.MinVersion)
		ok = false
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		bad(key+".key_file", "must be set with %s.cert_file (the client certificate's private key, PEM)", key)
		ok = false
	case t.CertFile == "" && t.KeyFile != "":
		bad(key+".cert_file", "must be set with %s.key_file (the client certificate chain, PEM)", key)
		ok = false
	}
	if !ok {
		return
	}
	if _, err := LoadUpstreamTLS(t, key); err != nil {
		fe := err.(*FieldError)
		bad(fe.Key, "%s", fe.Problem)
	}
}

// validateUpstreamTLS checks the default and every backend's own block,
// and that backends sharing a host:port (so one connection pool) do not
// ask for different TLS.
func (c *Config) validateUpstreamTLS(bad badFunc) {
	c.UpstreamTLS.validate(bad, "upstream_tls")
	byHost := map[string]UpstreamTLS{}
	for i := range c.Models {
		m := &c.Models[i]
		for j, b := range m.Backends {
			key := fmt.Sprintf("models[%d].backends[%d].tls", i, j)
			if b.TLS != nil {
				b.TLS.validate(bad, key)
			}
			host, ok := httpsHost(b.URL)
			if !ok {
				continue
			}
			want := c.UpstreamTLS
			if b.TLS != nil {
				want = *b.TLS
			}
			if prev, seen := byHost[host]; seen && prev != want {
				bad(key, "backends at %s share one connection pool and must have the same tls", host)
			}
			byHost[host] = want
		}
		for j, d := range m.Discovery {
			if d.TLS != nil {
				d.TLS.validate(bad, fmt.Sprintf("models[%d].discovery[%d].tls", i, j))
			}
		}
	}
}

// httpsHost is an https URL's host (host:port as written, lower case).
func httpsHost(url string) (string, bool) {
	rest, ok := strings.CutPrefix(url, "https://")
	if !ok {
		return "", false
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return strings.ToLower(rest), true
}
