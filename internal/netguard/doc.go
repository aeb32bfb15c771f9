// Package netguard bounds what clients can make the gateway hold before a
// request reaches its handler chain: connections (a total and a per-address
// cap, enforced at accept), the time a request body may take to arrive
// (nginx's client_body_timeout plus a total budget) and the bytes held in
// request bodies across all connections. Each bound has a metric.
//
// It also holds the one private-address check for addresses the gateway
// dials on a client's behalf (webhook destinations): InternalHost for a
// URL's host, RefuseInternal as a dialer's Control on the address dialled.
package netguard
