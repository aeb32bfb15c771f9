package config

import (
	"slices"
	"strings"
)

// Engines are the values of a backend's engine key (models[].backends[].engine,
// models[].discovery[].engine): what serves it, which decides whether the
// active health check probes it (internal/health, PlanFor). "" is unknown.
var Engines = []string{"vllm", "sglang", "llamacpp", "tgi", "ollama", "hosted"}

func validateEngine(bad badFunc, key, engine string) {
	if engine != "" && !slices.Contains(Engines, engine) {
		bad(key, "must be one of %s (or unset), got %q", strings.Join(Engines, ", "), engine)
	}
}
