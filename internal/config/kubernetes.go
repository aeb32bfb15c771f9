package config

import "regexp"

// dnsLabel is a Kubernetes name of the DNS-label kind (RFC 1123):
// namespaces, Services, port names. The service name also goes into a
// label selector, where anything else could widen the selection.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// validateKubernetes checks a kubernetes discovery source: a Service by
// name, an optional namespace, at most one of port_name and port.
func (d Discovery) validateKubernetes(bad badFunc, key string) {
	if !dnsLabel.MatchString(d.Service) {
		bad(key+".service", "must name the Service (lowercase letters, digits and '-', at most 63), got %q", d.Service)
	}
	if d.Namespace != "" && !dnsLabel.MatchString(d.Namespace) {
		bad(key+".namespace", "must be a namespace name (lowercase letters, digits and '-', at most 63) or unset (the pod's own), got %q", d.Namespace)
	}
	switch {
	case d.PortName != "" && d.Port != 0:
		bad(key+".port", "set port_name or port, not both")
	case d.PortName != "" && !dnsLabel.MatchString(d.PortName):
		bad(key+".port_name", "must be a port name of the Service (lowercase letters, digits and '-'), got %q", d.PortName)
	case d.Port < 0 || d.Port > 65535:
		bad(key+".port", "must be a port number (1-65535), or unset (port_name, or the Service's only port)")
	}
}
