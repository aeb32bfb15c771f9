//go:build !linux

package h1client

type peeker struct{}

// alive without a non-blocking peek: a stale connection is found by the
// retry rules of RoundTrip instead.
func (cn *conn) alive() bool { return cn.br.Buffered() == 0 }
