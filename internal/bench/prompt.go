package bench

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// DefaultBlockTokens is the prefix block size of the Mooncake traces.
const DefaultBlockTokens = 512

// The vocabulary: 4096 four-letter pseudo-words (consonant-vowel syllable
// pairs). Letters only, so prompts never need JSON escaping, and a fixed
// width, so a prompt's size is known before it is built.
const (
	vocabBits = 12
	vocabSize = 1 << vocabBits
	wordLen   = 4
)

func buildVocab() []byte {
	const cons, vows = "bcdfghjklmnprstvwz", "aeiou"
	v := make([]byte, 0, vocabSize*wordLen)
	for k := range vocabSize {
		a, b := k%(len(cons)*len(vows)), k/(len(cons)*len(vows))
		v = append(v, cons[a%len(cons)], vows[a/len(cons)], cons[b%len(cons)], vows[b/len(cons)%len(vows)])
	}
	return v
}

// bodyBuilder writes chat-completion request bodies. Prompt words come from
// deterministic streams:
//   - a request with HashIDs gets block i from a stream seeded by HashIDs[i]
//     only, so equal ids give equal words in every request and every run;
//   - a request without them gets a stream seeded by the run salt and its
//     index, sharing nothing with other requests.
//
// Every prompt also carries one nonce word unique to the request (first for
// prompts without HashIDs, so even a chained-hash prefix cache shares nothing;
// last for prompts with them, so shared prefixes stay shared). No two bodies
// are byte-identical, so an exact-match response cache in front of the
// target cannot turn a duplicated arrival into a free hit.
type bodyBuilder struct {
	vocab  []byte
	salt   uint64
	block  int
	head   []byte // {"model":"M","messages":[{"role":"user","content":"
	middle []byte // "}],"max_tokens":
	tail   []byte // ,"stream":...}
}

func newBodyBuilder(model string, stream bool, blockTokens int, salt uint64) (*bodyBuilder, error) {
	m, err := json.Marshal(model)
	if err != nil {
		return nil, fmt.Errorf("bench: model name: %w", err)
	}
	b := &bodyBuilder{vocab: buildVocab(), salt: salt, block: blockTokens}
	if b.block <= 0 {
		b.block = DefaultBlockTokens
	}
	b.head = fmt.Appendf(nil, `{"model":%s,"messages":[{"role":"user","content":"`, m)
	b.middle = []byte(`"}],"max_tokens":`)
	if stream {
		b.tail = []byte(`,"stream":true,"stream_options":{"include_usage":true}}`)
	} else {
		b.tail = []byte(`,"stream":false}`)
	}
	return b, nil
}

// size bounds the length of the body for a (max_tokens may be shorter
// than the 20 digits reserved for it).
func (b *bodyBuilder) size(a Arrival) int {
	n := max(a.InputTokens, 1)
	return len(b.head) + (n-1)*(wordLen+1) + nonceLen + len(b.middle) + 20 + len(b.tail)
}

// build returns the request body for arrival a, the idx-th of the run.
func (b *bodyBuilder) build(a Arrival, idx int) []byte {
	buf := make([]byte, 0, b.size(a))
	buf = append(buf, b.head...)
	buf = b.appendPrompt(buf, a, idx)
	buf = append(buf, b.middle...)
	buf = strconv.AppendInt(buf, int64(max(a.OutputTokens, 1)), 10)
	return append(buf, b.tail...)
}

// appendPrompt appends exactly max(a.InputTokens, 1) space-separated words.
func (b *bodyBuilder) appendPrompt(buf []byte, a Arrival, idx int) []byte {
	n := max(a.InputTokens, 1)
	own := splitmix(b.salt ^ splitmix(uint64(idx)+1))
	if len(a.HashIDs) == 0 {
		buf = appendNonce(buf, own)
		w := newWords(b.vocab, own)
		for range n - 1 {
			buf = append(buf, ' ')
			buf = w.append(buf)
		}
		return buf
	}
	left := n - 1 // the last word is the nonce
	for _, id := range a.HashIDs {
		if left == 0 {
			break
		}
		w := newWords(b.vocab, blockSeed(id))
		for range min(b.block, left) {
			buf = w.append(buf)
			buf = append(buf, ' ')
		}
		left -= min(b.block, left)
	}
	w := newWords(b.vocab, own)
	for ; left > 0; left-- { // a prompt longer than its blocks
		buf = w.append(buf)
		buf = append(buf, ' ')
	}
	return appendNonce(buf, own)
}

// blockSeed does not depend on the run salt: block words must be the same
// across runs too, so a warm prefix cache stays warm.
func blockSeed(id int) uint64 { return splitmix(uint64(id) ^ 0x6a09e667f3bcc908) }

const nonceLen = 17 // "q" + 16 hex digits

func appendNonce(buf []byte, seed uint64) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, 'q')
	for shift := 60; shift >= 0; shift -= 4 {
		buf = append(buf, hex[seed>>uint(shift)&0xf])
	}
	return buf
}

// words yields pseudo-random vocabulary words, five per 64-bit draw.
type words struct {
	vocab      []byte
	state, cur uint64
	left       int
}

func newWords(vocab []byte, seed uint64) words { return words{vocab: vocab, state: seed} }

func (w *words) append(buf []byte) []byte {
	if w.left == 0 {
		w.state += 0x9e3779b97f4a7c15
		w.cur = splitmix(w.state)
		w.left = 64 / vocabBits
	}
	i := int(w.cur&(vocabSize-1)) * wordLen
	w.cur >>= vocabBits
	w.left--
	return append(buf, w.vocab[i:i+wordLen]...)
}

// splitmix is the SplitMix64 finalizer: a cheap, well-mixed hash of x.
func splitmix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
