// Package netguard bounds what clients can make the gateway hold before a
// request reaches its handler chain: connections (a total and a per-address
// cap, enforced at accept), the time a request body may take to arrive
// (nginx's client_body_timeout plus a total budget) and the bytes held in
// request bodies across all connections. Each bound has a metric.
//
// Its connection type is the one layer a request's bytes cross under
// net/http: the caps' slot, the held read and write deadlines (slow
// clients, stalled uploads), the lingering close, net/http's refusals
// rewritten as OpenAI errors, and the request framing scan
// (internal/framing's Scanner, fed from the same Read) that Guard uses to
// refuse requests whose body length is ambiguous.
//
// It also holds the one private-address check for addresses the gateway
// dials on a client's behalf (webhook destinations): InternalHost for a
// URL's host, RefuseInternal as a dialer's Control on the address dialled.
package netguard
