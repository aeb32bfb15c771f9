package config

import "crypto/tls"

// TLS terminates TLS on the client listener (listen), for a gateway with
// no load balancer in front to do it (nginx ssl_certificate). Off unless
// both files are set. The admin listener stays plain (loopback).
type TLS struct {
	// CertFile is the PEM certificate chain, leaf first; KeyFile its
	// private key. Both are read at start and again on every reload
	// (SIGHUP, a change of the config file or of either file), so a
	// rotated certificate needs no restart; a pair that fails to load
	// refuses the reload and the old one keeps serving. Paths are relative
	// to the working directory. Both empty (the default): plain HTTP.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// MinVersion is the oldest protocol version accepted: "1.2" (the
	// default) or "1.3". Cipher suites are Go's defaults.
	MinVersion string `yaml:"min_version"`
}

// Enabled reports whether the client listener speaks TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// MinTLSVersion is min_version as crypto/tls's constant.
func (t TLS) MinTLSVersion() uint16 {
	if t.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

func defaultTLS() TLS { return TLS{MinVersion: "1.2"} }

func (c *Config) validateTLS(bad badFunc) {
	t := c.TLS
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		bad("tls.min_version", `must be "1.2" or "1.3", got %q`, t.MinVersion)
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		bad("tls.key_file", "must be set with tls.cert_file (the certificate's private key, PEM)")
	case t.CertFile == "" && t.KeyFile != "":
		bad("tls.cert_file", "must be set with tls.key_file (the certificate chain, PEM)")
	}
}
