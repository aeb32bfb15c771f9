package proxy

import "bytes"

// Capture keeps a copy of a relayed response body, up to Limit bytes, for
// the response cache. A body over the limit is dropped (Over is set): a
// truncated answer must never be cached.
type Capture struct {
	Limit int
	Buf   bytes.Buffer
	Over  bool
}

func (c *Capture) write(p []byte) {
	if c.Over {
		return
	}
	if c.Buf.Len()+len(p) > c.Limit {
		c.Over = true
		c.Buf = bytes.Buffer{}
		return
	}
	c.Buf.Write(p)
}
