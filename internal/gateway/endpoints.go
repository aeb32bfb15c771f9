package gateway

import (
	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/openai"
)

// The model-addressed JSON endpoints beyond the chat family and the
// Responses API (openai.ModelEndpoint: vLLM's rerank, score, classify,
// pooling, tokenize and detokenize, OpenAI's moderations) take the one
// chain every inference request takes: identify, parse (their own strict
// peek), limit, admit, route to a backend of the named model, forward,
// record. They differ from it in three places only:
//
//   - Their admission estimate is prefill only: the input's bytes (a
//     rerank's query once per document) over 4, no answer tokens. They
//     generate none.
//   - They are never cached nor coalesced. Their answers are deterministic
//     for a model, but the cache's key and replay are embeddings' and
//     completions' (a tenant's scope, a stream replayed as JSON): nobody
//     has shown them exactly as safe for these shapes, and a rerank or a
//     tokenize is cheap to recompute.
//   - Prefer: respond-async is ignored (RFC 7240 lets a server ignore a
//     preference): they answer in milliseconds to seconds, and the job
//     entries (the in-process runner, `sluice worker`, the Batch API)
//     serve the chat family's paths only.
//
// The tokenizer endpoints (openai.ModelEndpoint.CPUOnly) are also not
// admitted: see upstreamCall.cpuOnly.

// parseEndpoint is the parse stage's peek for x.ep: the model, and the
// input's size for the admission estimate (x.epInput).
func (x *exchange) parseEndpoint() (*cache.Parsed, error) {
	peek, n, err := openai.ParseEndpointRequest(x.ep, x.body.Bytes())
	if err != nil {
		return nil, err
	}
	x.epInput = n
	return &cache.Parsed{Peek: peek}, nil
}

// endpointCost is the admission estimate, in tokens, of a request to x.ep
// (parse stage). A pooling request's is its prefill, estimated from its
// input's bytes. A tokenizer request's is the unit: it costs the server
// no engine time (cpuOnly), so it is charged to the rate limits as a
// request, not as the tokens it counts.
func (x *exchange) endpointCost() float64 {
	if x.ep.CPUOnly() {
		return 1
	}
	return admission.EstimateCost(x.epInput, 0, 0)
}
