package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Fault-draw streams: one independent uniform draw per fault kind.
const (
	drawError uint64 = iota + 1
	drawHang
	drawDisconnect
)

// verdict is what the fault stage decided for one request.
type verdict int

const (
	proceed    verdict = iota
	proceedCut         // proceed, but cut the connection about half-way
	handled            // a response (or nothing, for a gone client) was already given
)

// applyFaults draws and applies this request's faults. It returns handled
// when the request must stop here: an injected 500, a client that left
// during the added latency or a hang, or a closing server.
func (s *Server) applyFaults(ctx context.Context, w http.ResponseWriter, n uint64) verdict {
	f := s.faults.Load()
	if !f.active() {
		return proceed
	}
	seed := s.cfg.Seed
	if f.ErrorRate > 0 && unitDraw(seed, n, drawError) < f.ErrorRate {
		s.st.errors.Add(1)
		writeError(w, http.StatusInternalServerError, "server_error", "internal_error", "simulated internal server error")
		return handled
	}
	if f.AddedLatency > 0 {
		t := time.NewTimer(f.AddedLatency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			s.st.cancelled.Add(1)
			return handled
		case <-s.quit:
			s.st.errors.Add(1)
			writeShuttingDown(w)
			return handled
		}
	}
	if f.HangRate > 0 && unitDraw(seed, n, drawHang) < f.HangRate {
		// Never answer: hold the connection until the client gives up. This
		// is the failure only a client-side timeout can detect.
		select {
		case <-ctx.Done():
			s.st.cancelled.Add(1)
		case <-s.quit:
			s.st.errors.Add(1)
			writeShuttingDown(w)
		}
		return handled
	}
	if f.DisconnectRate > 0 && unitDraw(seed, n, drawDisconnect) < f.DisconnectRate {
		return proceedCut
	}
	return proceed
}

// faultsWire is the JSON form of Faults used by /sim/faults: snake_case
// names and durations as Go duration strings ("200ms").
type faultsWire struct {
	ErrorRate      float64 `json:"error_rate"`
	AddedLatency   string  `json:"added_latency"`
	HangRate       float64 `json:"hang_rate"`
	DisconnectRate float64 `json:"disconnect_rate"`
}

func (f Faults) wire() faultsWire {
	return faultsWire{f.ErrorRate, f.AddedLatency.String(), f.HangRate, f.DisconnectRate}
}

func (fw faultsWire) faults() (Faults, error) {
	f := Faults{ErrorRate: fw.ErrorRate, HangRate: fw.HangRate, DisconnectRate: fw.DisconnectRate}
	if fw.AddedLatency != "" {
		d, err := time.ParseDuration(fw.AddedLatency)
		if err != nil {
			return Faults{}, fmt.Errorf("added_latency: %w", err)
		}
		f.AddedLatency = d
	}
	for _, r := range []float64{f.ErrorRate, f.HangRate, f.DisconnectRate} {
		if !(r >= 0 && r <= 1) {
			return Faults{}, fmt.Errorf("rates must be within [0, 1], got %v", r)
		}
	}
	if f.AddedLatency < 0 {
		return Faults{}, fmt.Errorf("added_latency must not be negative, got %v", f.AddedLatency)
	}
	return f, nil
}

func (s *Server) handleGetFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults().wire())
}

// handleSetFaults replaces the whole fault set (absent fields become zero)
// and answers with the settings now in force.
func (s *Server) handleSetFaults(w http.ResponseWriter, r *http.Request) {
	var fw faultsWire
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields() // a typo must not silently mean "no fault"
	if err := dec.Decode(&fw); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", "faults: "+err.Error())
		return
	}
	f, err := fw.faults()
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", "faults: "+err.Error())
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, s.Faults().wire())
}
