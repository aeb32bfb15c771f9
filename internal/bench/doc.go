// Package bench replays open-loop load against an OpenAI-compatible endpoint
// and reports what a user would have seen: TTFT, inter-token latency,
// end-to-end latency, refusals, goodput under an SLO and per-tenant figures.
//
// Open loop means arrivals follow the plan, never the server: a scheduler
// goroutine fires each request at its planned time and every request runs in
// its own goroutine, so a slow or stalled server cannot slow the offered load
// down (the "coordinated omission" of closed-loop tools). The only brake is
// Config.MaxInFlight, a safety cap; arrivals beyond it are counted as dropped
// by the client, never delayed. Result.Lag says how late the scheduler fired
// arrivals compared with the plan, so a report can tell whether the generator
// kept up.
//
// A run is built in three steps:
//
//	arr := bench.Poisson(rng, 20, time.Minute, 512, 128)           // or Constant, OnOff, LoadTrace
//	arr = bench.Reshape(arr, bench.TraceOptions{RateMultiplier: 2}) // optional
//	res, err := bench.Run(ctx, bench.Config{Target: url, Arrivals: arr, Stream: true})
//
// Tenants: Config.Tenants lists API keys and headers; Arrival.Tenant picks
// one. AssignTenants spreads one arrival stream over tenants by Share; a
// tenant with its own rate gets its own stream, joined with
// Merge(WithTenant(a, 0), WithTenant(b, 1)).
package bench
