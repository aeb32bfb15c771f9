package ratelimit

import (
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// docs/CONFIG.md prints rate_limits.store and rate_limits.max_keys unset
// as config.RateLimitStoreLocal and config.DefaultRateLimitMaxKeys: what
// Open builds from an empty section is that store with that bound.
func TestOpenUnsetIsTheDocumentedDefault(t *testing.T) {
	l, err := Open(config.RateLimits{}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.local == nil || l.store != Store(l.local) {
		t.Fatalf("store unset: got %T, want the local store", l.store)
	}
	if got, want := l.local.Cap(), NewLocalStore(config.DefaultRateLimitMaxKeys).Cap(); got != want {
		t.Errorf("max_keys unset holds %d buckets, the documented default %d holds %d", got, config.DefaultRateLimitMaxKeys, want)
	}
}
