// Package scalesim replays a day-scale arrival-rate trace against a pool of
// simulated inference servers that a controller grows and shrinks, in
// virtual time: `sluice bench autoscale` (docs/BENCHMARKS.md §12).
//
// # Time
//
// Trace time is compressed by a factor C: arrivals, cold starts and every
// controller period (the HPA's 15 s sync and 300 s stabilisation, the
// forecast lead, the hold) run C times faster than the trace, while a
// request's service (prefill, decode steps, its queue wait, the TTFT SLO)
// is not compressed. The run is a discrete-event simulation on a virtual
// clock, so its figures depend on the trace, the seed and the model, not on
// how fast or how busy the machine is: two runs with the same flags print
// the same table.
//
// # Servers
//
// Each server follows internal/sim's engine model step for step (its
// sim.Config, defaults included): FIFO admission while a batch slot is
// free and the KV budget holds prompt plus output, newly admitted prompts
// prefilled in the step (the whole batch waits), a decode step of
// DecodeStepBase + running × DecodeStepPerSeq giving each running sequence
// one token, the first token at the end of the step that admitted it. The
// prefix cache is not modelled (trace prompts share no text). The gateway
// in front keeps a FIFO queue and sends a request to the least loaded
// serving server with a free slot (as Sluice's admission queue with
// max_concurrency = slots does); a request still queued after MaxWait is
// refused (429).
//
// # Controllers
//
// fixed keeps the pool sized for the mean demand; hpa is the Kubernetes
// HPA algorithm with its defaults on slot utilisation; predictive follows
// scaling.Plan (sluice_model_desired_backends) fed by a scaling.Meter and
// the forecaster's p90 at now+lead, held by scaling.Hold. A new server
// serves after the cold start; a removed one takes no new request and
// leaves when its batch is done.
package scalesim
