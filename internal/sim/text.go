package sim

// vocabulary is the fixed word list the simulated model "speaks". It is a
// read-only table, not state. Words are plain lowercase ASCII so they can be
// spliced into JSON without escaping.
var vocabulary = [...]string{
	"the", "a", "model", "token", "batch", "cache", "queue", "server",
	"request", "stream", "prefix", "block", "decode", "prefill", "slot", "load",
	"gateway", "sluice", "river", "water", "flow", "gate", "busy", "calm",
	"fast", "slow", "steady", "bright", "quiet", "simple", "signal", "answer",
	"is", "was", "runs", "waits", "moves", "holds", "opens", "turns",
	"of", "to", "in", "on", "with", "from", "and", "then",
	"every", "some", "one", "two", "many", "few", "each", "more",
	"again", "now", "here", "there", "soon", "later", "always", "never",
}

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
	golden64    = 0x9e3779b97f4a7c15
)

// mix64 is the splitmix64 finaliser: a cheap, well-distributed bijection used
// for every derived random draw, so no PRNG object or lock is needed.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// unitDraw returns a uniform float in [0, 1) for (seed, n, stream). Distinct
// streams keep the fault kinds of one request independent.
func unitDraw(seed int64, n uint64, stream uint64) float64 {
	z := mix64(uint64(seed) ^ mix64(n*golden64+stream))
	return float64(z>>11) / (1 << 53)
}

// textGen yields the deterministic output words of one request. It is a value
// (no allocation) advanced in place; word i depends only on the seed, the
// prompt hash and i, so the same request always gets the same text and a
// longer max_tokens extends a shorter answer.
type textGen struct{ state uint64 }

func newTextGen(seed int64, promptHash uint64) textGen {
	return textGen{state: uint64(seed) ^ promptHash}
}

func (g *textGen) next() string {
	g.state += golden64
	return vocabulary[mix64(g.state)%uint64(len(vocabulary))]
}

// appendText appends n generated tokens, each one word followed by a space.
func (g *textGen) appendText(b []byte, n int) []byte {
	for range n {
		b = append(b, g.next()...)
		b = append(b, ' ')
	}
	return b
}
