package proxy

import (
	"context"
	"errors"
	"testing"

	"github.com/sluice-gw/sluice/internal/outcome"
)

// Only a 2xx relayed whole is a success; a 2xx whose stream broke is a
// failure, one whose client left says nothing.
func TestResultOutcome(t *testing.T) {
	for _, c := range []struct {
		status int
		err    error
		want   outcome.Outcome
	}{
		{200, nil, outcome.Success},
		{500, nil, outcome.Failure},
		{502, nil, outcome.Failure},
		{503, nil, outcome.Busy},
		{429, nil, outcome.Busy},
		{400, nil, outcome.Ignored},
		{200, ErrStreamIdle, outcome.Failure},
		{200, errors.Join(ErrUpstream, errors.New("reset")), outcome.Failure},
		{200, context.Canceled, outcome.Ignored},
		{0, context.Canceled, outcome.Ignored},
		{0, ErrFirstByteTimeout, outcome.Failure},
		{0, ErrSaturated, outcome.Busy},
		{0, ErrNoBackend, outcome.Failure},
		{200, ErrShuttingDown, outcome.Ignored},
	} {
		r := Result{Status: c.status, Err: c.err}
		if got := r.Outcome(); got != c.want {
			t.Errorf("status %d, err %v: %v; want %v", c.status, c.err, got, c.want)
		}
	}
}
