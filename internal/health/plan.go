package health

import "github.com/sluice-gw/sluice/internal/endpoint"

// Plan is how the checker probes one backend.
type Plan struct {
	// Path is the probe path; "" means the backend is not probed (and a
	// backend left probe-down by an earlier plan is let back up).
	Path string
	// Auto marks a guess (the engine is unknown): an answer saying the
	// endpoint does not exist (404, 405, 501) turns probing off for the
	// backend, logged once, instead of taking it down.
	Auto bool
}

// PlanFor is the default rule, by the backend's engine (config.Engines):
//
//   - vllm, sglang, llamacpp, tgi: path (health.active.path, default
//     /health: all four serve it, and answer 503 while loading or broken);
//   - ollama, hosted: not probed (Ollama and hosted APIs answer 404 at
//     /health; a hosted API's health is its own business, and probing it
//     would spend requests on a metered key);
//   - unset, with an api_key: not probed (most likely a hosted API);
//   - unset, without an api_key: path, as a guess (Auto).
func PlanFor(spec endpoint.Spec, path string) Plan {
	switch spec.Engine {
	case "vllm", "sglang", "llamacpp", "tgi":
		return Plan{Path: path}
	case "":
		if spec.APIKey != "" {
			return Plan{}
		}
		return Plan{Path: path, Auto: true}
	}
	return Plan{}
}
