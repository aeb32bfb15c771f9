package gateway

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/discovery"
)

// DiscoveryStatus is a model's discovery as /readyz and /status show it
// (Options.Discovery): a source that cannot reach its registry keeps the
// last set it knew, so the pool looks fine while it goes stale; this says
// so where an operator looks, not only in the log line of the moment.
// /readyz (the public listener) carries the counts, the state and the
// failing sources' kinds; /status (the admin listener) their errors too,
// which name registry hosts, files and addresses.
//
// Readiness follows Envoy's cluster warming: a model whose sources have
// never found a backend set and that has no static backend keeps the
// replica unready (State "initializing"); once a set was known, a failing
// source keeps it (State "degraded") and readiness follows the backends.
type DiscoveryStatus struct {
	// State is "ok", "degraded" (a source fails; the last sets serve)
	// or "initializing" (no source has found a set yet).
	State string `json:"state"`
	// Sources counts the model's discovery sources; Failing those whose
	// last attempt failed (their last set kept), Pending those that have
	// reported neither a set nor a failure yet (starting).
	Sources int `json:"sources"`
	Failing int `json:"failing"`
	Pending int `json:"pending"`
	// Backends counts the backends the sources know now, each once.
	Backends int `json:"backends"`
	// FailingSince is when the oldest run of failures among the failing
	// sources began (RFC 3339, UTC); absent while none fails.
	FailingSince string `json:"failing_since,omitempty"`
	// Reason says, while the state is not "ok", what is wrong in a
	// sentence that names the failing sources by index and kind.
	Reason string `json:"reason,omitempty"`
	// Errors are the failing sources' last errors ("source N (kind):
	// ..."), on /status only.
	Errors []string `json:"errors,omitempty"`
	// holdsReadiness: initialising since the gateway's start (not added
	// by a reload), so readiness waits for it (serveReady).
	holdsReadiness bool
}

// Discovery states (DiscoveryStatus.State).
const (
	DiscoveryOK           = "ok"
	DiscoveryDegraded     = "degraded"
	DiscoveryInitializing = "initializing"
)

// discoveryStatus is the status of a model's sources as discovery
// tells it.
func discoveryStatus(st discovery.State) *DiscoveryStatus {
	d := &DiscoveryStatus{State: DiscoveryOK, Sources: st.Sources, Failing: st.Failing, Pending: st.Pending,
		Backends: st.Backends, Errors: st.Errors, holdsReadiness: !st.Known && st.Startup}
	failing := ""
	if !st.FailingSince.IsZero() {
		d.FailingSince = st.FailingSince.UTC().Format(time.RFC3339)
		failing = fmt.Sprintf("%s failing since %s", strings.Join(st.Failures, ", "), d.FailingSince)
	}
	switch {
	case !st.Known:
		d.State = DiscoveryInitializing
		d.Reason = "no backend set found yet"
		if failing != "" {
			d.Reason += ": " + failing
		}
		if st.Pending > 0 {
			d.Reason += fmt.Sprintf("; %d of %d sources not heard from", st.Pending, st.Sources)
		}
	case st.Failing > 0:
		d.State = DiscoveryDegraded
		d.Reason = failing + "; the last known backends serve"
	}
	return d
}

// discoveryOf is model's discovery status, nil when it has no source or
// the gateway was built without Options.Discovery.
func (g *Gateway) discoveryOf(model string) *DiscoveryStatus {
	if g.discovery == nil {
		return nil
	}
	st, ok := g.discovery(model)
	if !ok {
		return nil
	}
	return discoveryStatus(st)
}
