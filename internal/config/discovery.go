package config

import (
	"net"
	"strings"
	"time"
)

// Discovery is one source of a model's backends. Type picks it:
// "file" (Path: a JSON or YAML list of target groups, watched), "dns"
// (Name resolved as Record A — A and AAAA, on Port — or SRV; re-resolved
// at the answer's TTL within MinInterval and MaxInterval, defaults 1s
// and 60s; Server "" = the first resolver of /etc/resolv.conf) or
// "consul" (the Consul block: a service's passing instances) or
// "kubernetes" (the ready endpoints of Service's EndpointSlices;
// kubernetes.go). The backend fields are the template every target found
// gets.
type Discovery struct {
	Type        string   `yaml:"type"`
	Path        string   `yaml:"path"`
	Name        string   `yaml:"name"`
	Record      string   `yaml:"record"`
	Port        int      `yaml:"port"`
	Server      string   `yaml:"server"`
	MinInterval Duration `yaml:"min_interval"`
	MaxInterval Duration `yaml:"max_interval"`
	// Kubernetes: the EndpointSlices of Service in Namespace, on the port
	// named PortName (or Port); Kubeconfig "" = in-cluster (kubernetes.go).
	Namespace  string `yaml:"namespace"`
	Service    string `yaml:"service"`
	PortName   string `yaml:"port_name"`
	Kubeconfig string `yaml:"kubeconfig"`
	// Scheme of targets given as host:port; default http.
	Scheme         string `yaml:"scheme"`
	Weight         int    `yaml:"weight"`
	MaxConcurrency int    `yaml:"max_concurrency"`
	APIKey         string `yaml:"api_key"`
	UpstreamModel  string `yaml:"upstream_model"`
	Engine         string `yaml:"engine"` // as Backend.Engine
	// TLS replaces upstream_tls for the https targets found; as Backend.TLS.
	TLS *UpstreamTLS `yaml:"tls"`
	// Consul: type consul's keys (discovery_consul.go).
	Consul ConsulDiscovery `yaml:"consul"`
}

func (d Discovery) validate(bad badFunc, key string) {
	switch d.Type {
	case "file":
		if d.Path == "" {
			bad(key+".path", "must name the targets file")
		}
	case "dns":
		d.validateDNS(bad, key)
	case "consul":
	case "kubernetes":
		d.validateKubernetes(bad, key)
	default:
		bad(key+".type", "must be file, dns, consul or kubernetes, got %q", d.Type)
	}
	d.validateConsul(bad, key)
	if d.Scheme != "" && d.Scheme != "http" && d.Scheme != "https" {
		bad(key+".scheme", "must be http or https, got %q", d.Scheme)
	}
	if d.Weight < 0 {
		bad(key+".weight", "must be >= 0")
	}
	if d.MaxConcurrency < 0 {
		bad(key+".max_concurrency", "must be >= 0")
	}
	validateEngine(bad, key+".engine", d.Engine)
}

// DNS discovery's re-resolution bounds when unset.
const (
	DefaultDNSMinInterval = time.Second
	DefaultDNSMaxInterval = time.Minute
)

// DNSIntervals are d's re-resolution bounds, defaults applied.
func (d Discovery) DNSIntervals() (lo, hi time.Duration) {
	lo, hi = d.MinInterval.D(), d.MaxInterval.D()
	if lo == 0 {
		lo = DefaultDNSMinInterval
	}
	if hi == 0 {
		hi = max(DefaultDNSMaxInterval, lo)
	}
	return lo, hi
}

func (d Discovery) validateDNS(bad badFunc, key string) {
	if d.Name == "" {
		bad(key+".name", "must name the DNS name to resolve")
	}
	switch strings.ToUpper(d.Record) {
	case "", "A":
		if d.Port < 1 || d.Port > 65535 {
			bad(key+".port", "must be the backends' port (1-65535) for A/AAAA records")
		}
	case "SRV":
		if d.Port != 0 {
			bad(key+".port", "must be unset for SRV records (they carry the port)")
		}
	default:
		bad(key+".record", "must be A (A and AAAA) or SRV, got %q", d.Record)
	}
	if d.Server != "" {
		if _, _, err := net.SplitHostPort(d.Server); err != nil {
			bad(key+".server", "must be host:port, got %q", d.Server)
		}
	}
	if d.MinInterval < 0 || d.MaxInterval < 0 {
		bad(key+".min_interval", "intervals must be positive durations")
	} else if lo, hi := d.DNSIntervals(); hi < lo {
		bad(key+".max_interval", "must be at least min_interval")
	}
}
