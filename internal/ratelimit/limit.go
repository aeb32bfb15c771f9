package ratelimit

import "github.com/sluice-gw/sluice/internal/rate"

// Limit is the rate a store enforces on one bucket: rate.Limit, nginx
// limit_req semantics (Rate, Burst, Delay), as the config decodes it.
type Limit = rate.Limit
