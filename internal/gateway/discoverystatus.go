package gateway

// DiscoveryStatus is a model's discovery as /readyz and /status show it
// (Options.Discovery): a source that cannot reach its registry keeps the
// last set it knew, so the pool looks fine while it goes stale; this says
// so where an operator looks, not only in the log line of the moment.
// /readyz (the public listener) carries the counts; /status (the admin
// listener) the failing sources' errors too, which name registry hosts.
// Readiness is not changed by it: a failing source's last set still
// serves, and a model left with no backend is not ready anyway.
type DiscoveryStatus struct {
	// Sources counts the model's discovery sources; Failing those whose
	// last attempt failed (their last set kept), Pending those that have
	// reported neither a set nor a failure yet (starting).
	Sources int `json:"sources"`
	Failing int `json:"failing"`
	Pending int `json:"pending"`
	// Backends counts the backends the sources know now, each once.
	Backends int `json:"backends"`
	// Errors are the failing sources' last errors ("source N: ..."),
	// on /status only.
	Errors []string `json:"errors,omitempty"`
}

// discoveryOf is model's discovery status, nil when it has no source or
// the gateway was built without Options.Discovery.
func (g *Gateway) discoveryOf(model string) *DiscoveryStatus {
	if g.discovery == nil {
		return nil
	}
	return g.discovery(model)
}
