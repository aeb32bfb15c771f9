package gateway

import (
	"strings"

	"github.com/sluice-gw/sluice/internal/admission"
	"github.com/sluice-gw/sluice/internal/cache"
	"github.com/sluice-gw/sluice/internal/openai"
)

// The model-addressed endpoints beyond the chat family and the Responses
// API (openai.ModelEndpoint: vLLM's rerank, score, classify, pooling,
// tokenize and detokenize, OpenAI's moderations, and the audio
// transcriptions and translations) take the one chain every inference
// request takes: identify, parse (their own strict peek: JSON, or the
// audio endpoints' multipart form), limit, admit, route to a backend of
// the named model, forward, record. They differ from it in three places
// only:
//
//   - Their admission estimate is prefill only (prefillCost): the
//     input's bytes (a rerank's query once per document) over 4, no
//     answer tokens. They generate none. (Audio: its prefill estimated
//     from the file's size, and the default answer: endpointCost.)
//   - They are never cached nor coalesced, whatever the cache rules say.
//     Their answers are deterministic for a model, but the cache's key,
//     its determinism test and its replay (a stream re-encoded as JSON and
//     back) were built and checked for completions and embeddings; nobody
//     has shown them as safe for these shapes (a moderation's verdict, a
//     form's file), and a rerank or a tokenize is cheap next to the
//     generation the cache saves.
//   - Prefer: respond-async is ignored (RFC 7240 lets a server ignore a
//     preference): they answer in milliseconds to seconds, and the job
//     entries (the in-process runner, `sluice worker`, the Batch API)
//     serve the chat family's paths only.
//
// The tokenizer endpoints (openai.ModelEndpoint.CPUOnly) are also not
// admitted: see upstreamCall.cpuOnly.

// parseEndpoint is the parse stage's peek for x.ep: the model, and the
// input's size for the admission estimate (x.epInput): the bytes of text
// the server prefills, or an audio request's file bytes.
func (x *exchange) parseEndpoint() (*cache.Parsed, error) {
	if x.ep.Multipart() {
		peek, a, err := openai.ParseMultipartChunks(x.r.Header.Get("Content-Type"), x.body.Chunks())
		if err != nil {
			return nil, err
		}
		x.epInput = a.FileBytes
		return &cache.Parsed{Peek: peek}, nil
	}
	peek, n, err := openai.ParseEndpointRequest(x.ep, x.body.Bytes())
	if err != nil {
		return nil, err
	}
	x.epInput = n
	return &cache.Parsed{Peek: peek}, nil
}

// bodyBound is the bound on x's body: an audio form's is
// max_audio_body_bytes (OpenAI takes files up to 25 MB, and a form is
// only scanned for its fields, never parsed as JSON), every other body's
// max_body_bytes. Either way memory follows the bytes received
// (proxy.BodyPool), within server.max_body_memory; a form stays in the
// blocks it was read into (ReadBodyChunks), never copied whole.
func (x *exchange) bodyBound() bodyBoundError {
	if x.ep.Multipart() {
		return bodyBoundError{what: "audio form", key: "max_audio_body_bytes", limit: int64(x.rt.Config.MaxAudioBodyBytes)}
	}
	return bodyBoundError{what: "request body", key: "max_body_bytes", limit: int64(x.rt.Config.MaxBodyBytes)}
}

// endpointCost is the admission estimate, in tokens, of a request to x.ep
// (parse stage). A pooling request's is its prefill, estimated from its
// input's bytes. A tokenizer request's is the unit: it costs the server
// no engine time (cpuOnly), so it is charged to the rate limits as a
// request, not as the tokens it counts.
func (x *exchange) endpointCost() float64 {
	switch {
	case x.ep.CPUOnly():
		return 1
	case x.ep.Multipart():
		// Whisper encodes 50 positions per second of audio, and a
		// compressed file holds about 16 kB a second (128 kbit/s; a
		// 16 kHz WAV twice that): bytes/320 tokens of prefill, which
		// EstimateCost takes as bytes over 4. The answer is text of
		// unknown length: the default answer's tokens.
		return admission.EstimateCost(x.epInput/80, 0, x.rt.Config.Admission.DefaultMaxTokens)
	}
	return prefillCost(x.epInput)
}

// pathEmbeddings is the one path of the chat family's entry that
// generates no tokens: its admission estimate is prefillCost.
const pathEmbeddings = "/v1/embeddings"

// prefillCost is the admission estimate, in tokens, of a request that
// generates none (embeddings, the pooling endpoints): its input's bytes
// over 4 (admission.EstimateCost), and no answer. A default answer on top
// (DefaultMaxTokens) would be charged to the rate limits' tokens, held of
// the queue's fair share and drain estimate, and counted as demand, for
// work the server never does.
func prefillCost(inputBytes int) float64 { return admission.EstimateCost(inputBytes, 0, 0) }

// defaultModeration sets the model of a moderation request that names
// none (OpenAI makes it optional, defaulting to its own moderation
// model): the one model declared to serve moderations (models[].moderation),
// added to the body on its way upstream (Peek.ModelDefaulted). With none
// or several declared the gateway cannot choose: a 400 naming the
// parameter, and the models a client may name.
func (rt *Runtime) defaultModeration(peek *openai.Peek) *openai.Error {
	var serving []string
	for i := range rt.Config.Models {
		if rt.Config.Models[i].Moderation {
			serving = append(serving, rt.Config.Models[i].Name)
		}
	}
	if len(serving) == 1 {
		peek.Model, peek.ModelDefaulted = serving[0], true
		return nil
	}
	msg := "you must provide a model parameter: no model here is declared to serve moderations"
	if len(serving) > 1 {
		msg = "you must provide a model parameter: the models serving moderations here are '" + strings.Join(serving, "', '") + "'"
	}
	e := openai.BadRequest("missing_model", msg)
	e.Param = "model"
	return e
}
