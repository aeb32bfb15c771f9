package config

import (
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// ConsulDiscovery is the `consul` block of a discovery source of type
// consul: the passing instances of Service, read from the Consul agent's
// health API with blocking queries (internal/discovery.Consul).
type ConsulDiscovery struct {
	Service string `yaml:"service"`
	// Tags: an instance must carry every one.
	Tags []string `yaml:"tags"`
	// Datacenter; "" = the agent's own.
	Datacenter string `yaml:"datacenter"`
	// Address of the agent, host:port; default 127.0.0.1:8500.
	Address string `yaml:"address"`
	// Scheme of the agent's API: http (default) or https (the
	// discovery source's own scheme is the backends').
	Scheme string `yaml:"scheme"`
	// Token is the ACL token (write ${VAR} to take it from the
	// environment); TokenFile a file holding it, read at every query so
	// a rotated token is used. Neither: the client library's
	// CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE. Never logged.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// Wait is how long the agent may hold a blocking query with nothing
	// to report; 0 = 5m (Consul's default), at most 10m (its limit).
	Wait Duration `yaml:"wait"`
}

// MaxConsulWait is the longest blocking-query wait Consul honours.
const MaxConsulWait = 10 * time.Minute

// consulName is what a Consul service or datacenter name may hold here:
// it goes into the API's URL path unescaped (by the client library).
func consulName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

func (c ConsulDiscovery) validate(bad badFunc, key string) {
	if !consulName(c.Service) {
		bad(key+".service", "must name the Consul service (letters, digits, '-', '_', '.'), got %q", c.Service)
	}
	for i, tag := range c.Tags {
		if tag == "" {
			bad(key+".tags["+strconv.Itoa(i)+"]", "must not be empty")
		}
	}
	if c.Datacenter != "" && !consulName(c.Datacenter) {
		bad(key+".datacenter", "must be a datacenter name (letters, digits, '-', '_', '.'), got %q", c.Datacenter)
	}
	if c.Address != "" {
		_, port, err := net.SplitHostPort(c.Address)
		if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > 65535 || strings.Contains(c.Address, "/") {
			bad(key+".address", "must be the agent's host:port (default 127.0.0.1:8500; the scheme goes in scheme), got %q", c.Address)
		}
	}
	if c.Scheme != "" && c.Scheme != "http" && c.Scheme != "https" {
		bad(key+".scheme", "must be http or https (the agent's API), got %q", c.Scheme)
	}
	if c.Token != "" && c.TokenFile != "" {
		bad(key+".token_file", "cannot be combined with token (which one would be sent?)")
	}
	if w := c.Wait.D(); w != 0 && (w < time.Second || w > MaxConsulWait) {
		bad(key+".wait", "must be from 1s to 10m (Consul's limit), or unset for 5m; got %v", w)
	}
}

// validateConsul checks a discovery source's consul block: required for
// type consul, refused on the others.
func (d Discovery) validateConsul(bad badFunc, key string) {
	set := !reflect.ValueOf(d.Consul).IsZero()
	switch {
	case d.Type == "consul":
		d.Consul.validate(bad, key+".consul")
	case set:
		bad(key+".consul", "only goes with type: consul")
	}
}
