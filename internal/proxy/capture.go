package proxy

import "bytes"

// Capture keeps a copy of a relayed response body, up to Limit bytes, for
// the response cache. A body over the limit is dropped (Over is set) and
// the rest of the answer is only relayed: a truncated answer must never be
// cached, and a large one must not cost more than Limit.
type Capture struct {
	Limit int
	Buf   bytes.Buffer
	Over  bool
	// Held, when set, is told every change in the bytes kept (a gauge).
	Held func(delta int)
}

func (c *Capture) write(p []byte) {
	if c.Over {
		return
	}
	if c.Buf.Len()+len(p) > c.Limit {
		c.Over = true
		c.held(-c.Buf.Len())
		c.Buf = bytes.Buffer{}
		return
	}
	c.Buf.Write(p)
	c.held(len(p))
}

// Release drops the copy once the cache fill is done with it.
func (c *Capture) Release() {
	c.held(-c.Buf.Len())
	c.Buf = bytes.Buffer{}
}

func (c *Capture) held(delta int) {
	if c.Held != nil && delta != 0 {
		c.Held(delta)
	}
}
