// Package cache is Sluice's response cache for OpenAI-compatible requests:
// request keys (Key), a canonical stored answer that replays as JSON or as
// an SSE stream (Entry), two cache levels behind one small interface
// (Memory in-process, Redis shared), a Tiered cache that combines them with
// TTL jitter, a Bloom filter and negative-caching rules, request coalescing
// (Group), and Prometheus metrics (Metrics).
//
// The package knows nothing about HTTP handlers: the gateway computes the
// key, asks the Tiered cache, coalesces misses with a Group and stores what
// the backend answered.
package cache
