package config

import "testing"

func TestNearestKey(t *testing.T) {
	allowed := []string{"admin", "admission", "auth", "cache", "listen", "max_body_bytes", "models", "timeouts"}
	tests := map[string]string{
		"admision":      "admission",
		"Admission":     "admission",
		"admisison":     "admission", // transposition
		"listn":         "listen",
		"modles":        "models",
		"max_body_byte": "max_body_bytes",
		"timeout":       "timeouts",
		"adm":           "", // too far from anything for its length
		"colour":        "",
		"catch":         "cache",
	}
	for key, want := range tests {
		if got := nearestKey(key, allowed); got != want {
			t.Errorf("nearestKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "ab", 2}, {"kitten", "sitting", 3},
		{"ab", "ba", 1}, {"admision", "admission", 1}, {"héllo", "hello", 1},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := editDistance(tt.b, tt.a); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d (symmetric)", tt.b, tt.a, got, tt.want)
		}
	}
}
