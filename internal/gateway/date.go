package gateway

import "net/http"

// stampDate puts the arrival's Date on an answer the chain writes itself
// before admission (a cache hit, a refusal); see guard for which requests
// have one. Without it net/http dates the answer at its write; a relayed
// answer is dated by the forwarder at its head's write, never the
// backend's (proxy.Forwarder.writeHead). With the wall
// clock (send), the answer's send deadline starts at the arrival too,
// which it is written within the request's own CPU time of.
func (v *answerValues) stampDate(h http.Header) {
	if v != nil && v.date != nil {
		h["Date"] = v.date
		if v.send != nil {
			v.send.armAt(v.start)
		}
	}
}
