// Package admission decides how much work a model pool takes at once and who
// goes next when it is full. It has three parts, each usable alone:
//
//   - Limiter: the concurrency limit of one backend, either Static or an
//     AdaptiveLimit that finds the knee of the backend's throughput curve
//     from the latencies it observes.
//   - Queue: the gateway's per-pool queue, a counting semaphore whose
//     capacity is supplied by the caller (typically the sum of the usable
//     backends' limits). Waiters are ordered by priority class and, within a
//     class, by weighted fair queuing on estimated token cost, so a tenant
//     sending huge prompts cannot starve one sending short chats. Requests
//     that cannot be served before their deadline are refused at once with a
//     typed *Rejection that carries a Retry-After estimate.
//   - Collector: the queue's Prometheus metrics, registered by the caller.
//
// Time is always a parameter (a clock function or a now argument) and no part
// of the package starts a goroutine: grants happen inside Acquire, Release and
// Kick, under the queue's mutex.
package admission
