package config

// DefaultPolicy is a model's routing policy when models[].policy is unset:
// power of two choices on EWMA latency (internal/routing).
const DefaultPolicy = "p2c_ewma"

// PolicyFor is m's routing policy: policy, or DefaultPolicy when unset.
// Every reader of the policy goes through it, so the default is one value.
func PolicyFor(m *Model) string {
	if m.Policy == "" {
		return DefaultPolicy
	}
	return m.Policy
}
