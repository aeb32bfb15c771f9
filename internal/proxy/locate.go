package proxy

import (
	"context"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// Locate asks backends which of them holds a stored response, as Ask
// with probe does (at most probeWidth at a time, each probe's head
// within Timeouts.Probe, all within Timeouts.Total), relaying nothing: in is the read of the
// response (GET /v1/responses/{id}). It returns the backend that
// answered it with a 2xx, or nil: with res.NotFound when every backend
// answered 404 (none holds it), else when some could not say (res.Err)
// or one answered something other than the response (res.Status). The
// answer's body is read off (bounded) and closed: every probe has ended
// when Locate returns.
func (f *Forwarder) Locate(ctx context.Context, in *FollowUp, backends []*endpoint.Backend) (holder *endpoint.Backend, res FollowUpResult) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// However many backends: the whole round within Timeouts.Total, as
	// Ask's (those not reached by then leave res.Err set, not NotFound).
	total := f.opt.AfterFunc(f.opt.Timeouts.Total, func() { cancel(ErrTotalTimeout) })
	defer total.Stop()
	a := f.probe(ctx, in, backends, &res)
	if a.resp == nil {
		return nil, res
	}
	res.Backend, res.Status = a.b, a.resp.StatusCode
	drain(a.resp.Body)
	a.cancel(nil)
	if a.resp.StatusCode/100 != 2 {
		return nil, res
	}
	return a.b, res
}
