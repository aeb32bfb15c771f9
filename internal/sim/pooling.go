package sim

import (
	"context"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// The endpoints beyond generation (poolKind) answer with vLLM's shapes:
// rerank (Jina/Cohere), score, classify and pooling as vLLM's pooling
// entrypoints do, moderations as OpenAI's, tokenize and detokenize as
// vLLM's tokenizer endpoints. Scoring and classifying cost the engine
// their prefill (one engine step: the prompt's tokens at
// PrefillTokensPerSec, then one decode step's base, as a request with one
// output token; Instant answers at once); the tokenizer runs on the CPU
// and answers at once, never queued behind generation, as vLLM's does.

// handlePool serves one poolKind. Stage order: parse → model check →
// faults → (tokenizer | Instant | engine prefill) → answer.
func (s *Server) handlePool(kind poolKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, n, ok := readParsed(s, w, r, func(b []byte) (poolRequest, error) { return parsePoolRequest(kind, b) })
		if !ok || !s.servesModel(w, req.model) {
			return
		}
		if s.applyFaults(r.Context(), w, n) == handled {
			return
		}
		if kind != poolTokenize && kind != poolDetokenize && !s.cfg.Instant {
			if req.promptTokens+1 > s.cfg.KVTokens {
				writeErrorParam(w, http.StatusBadRequest, "invalid_request_error", "context_length_exceeded", "",
					"This model's maximum context length is "+strconv.Itoa(s.cfg.KVTokens)+" tokens. However, your request has "+
						strconv.Itoa(req.promptTokens)+" input tokens.")
				return
			}
			if !s.prefill(r.Context(), w, &req) {
				return
			}
		}
		writeJSON(w, http.StatusOK, s.poolAnswer(&req, n))
		s.st.completed.Add(1)
	}
}

// prefill runs req's prompt through the engine as a sequence with one
// output token and waits for it to end. It answers the client itself and
// returns false when the engine refused it or it did not end.
func (s *Server) prefill(ctx context.Context, w http.ResponseWriter, req *poolRequest) bool {
	sq := s.submit(w, &request{promptTokens: req.promptTokens, maxTokens: 1})
	if sq == nil {
		return false
	}
	defer s.leave(sq)
	if _, err := sq.wait(ctx, 1); err != nil {
		s.failSeq(w, err, false)
		return false
	}
	return true
}

// poolAnswer is req's answer body (n: the request's arrival number, for
// its id).
func (s *Server) poolAnswer(req *poolRequest, n uint64) any {
	id := strconv.FormatUint(n, 10)
	created := s.now().Unix()
	usage := poolUsage{PromptTokens: req.promptTokens, TotalTokens: req.promptTokens}
	switch req.kind {
	case poolRerank:
		return s.rerankAnswer(req, "rerank-sim-"+id)
	case poolScore:
		data := make([]scoreData, len(req.items))
		for i := range req.items {
			data[i] = scoreData{Index: i, Object: "score", Score: s.relevance(req, i)}
		}
		return scoreResponse{ID: "score-sim-" + id, Object: "list", Created: created, Model: s.cfg.Model, Data: data, Usage: usage}
	case poolClassify:
		data := make([]classifyData, len(req.items))
		for i, it := range req.items {
			p := unitDraw(s.cfg.Seed, it.hash, 1)
			label := 0
			if p < 0.5 {
				label = 1
			}
			data[i] = classifyData{Index: i, Label: "LABEL_" + strconv.Itoa(label), Probs: []float64{p, 1 - p}, NumClasses: 2}
		}
		return classifyResponse{ID: "classify-sim-" + id, Object: "list", Created: created, Model: s.cfg.Model, Data: data, Usage: usage}
	case poolPooling:
		data := make([]poolingData, len(req.items))
		for i, it := range req.items {
			data[i] = poolingData{Index: i, Object: "pooling", Data: embed(s.cfg.Seed, it.hash)}
		}
		return poolingResponse{ID: "pool-sim-" + id, Object: "list", Created: created, Model: s.cfg.Model, Data: data, Usage: usage}
	case poolModerations:
		results := make([]moderationResult, len(req.items))
		for i, it := range req.items {
			results[i] = s.moderate(it)
		}
		return moderationResponse{ID: "modr-sim-" + id, Model: s.cfg.Model, Results: results}
	case poolTokenize:
		words := strings.Fields(req.items[0].text)
		ids := make([]int, len(words))
		for i, w := range words {
			ids[i] = tokenIDOf(w)
		}
		return tokenizeResponse{Count: len(ids), MaxModelLen: s.cfg.KVTokens, Tokens: ids}
	default: // poolDetokenize
		words := make([]string, len(req.tokens))
		for i, id := range req.tokens {
			words[i] = wordOf(id)
		}
		return detokenizeResponse{Prompt: strings.Join(words, " ")}
	}
}

// rerankAnswer ranks the documents by relevance, best first (ties by
// index), keeping top_n when set.
func (s *Server) rerankAnswer(req *poolRequest, id string) rerankResponse {
	results := make([]rerankResult, len(req.items))
	for i, it := range req.items {
		results[i] = rerankResult{Index: i, Document: rerankDocument{Text: it.text}, RelevanceScore: s.relevance(req, i)}
	}
	slices.SortStableFunc(results, func(a, b rerankResult) int {
		switch {
		case a.RelevanceScore > b.RelevanceScore:
			return -1
		case a.RelevanceScore < b.RelevanceScore:
			return 1
		}
		return 0
	})
	if req.topN > 0 && req.topN < len(results) {
		results = results[:req.topN]
	}
	return rerankResponse{ID: id, Model: s.cfg.Model, Usage: rerankUsage{PromptTokens: req.promptTokens, TotalTokens: req.promptTokens}, Results: results}
}

// relevance scores item i against its pair: the share of the pair's
// words it holds, nudged by a deterministic draw so that ties are rare;
// in [0, 1).
func (s *Server) relevance(req *poolRequest, i int) float64 {
	q := req.pair[0]
	if len(req.pair) > 1 {
		q = req.pair[i]
	}
	qw := strings.Fields(q.text)
	d := " " + strings.Join(strings.Fields(req.items[i].text), " ") + " "
	shared := 0
	for _, w := range qw {
		if strings.Contains(d, " "+w+" ") {
			shared++
		}
	}
	draw := unitDraw(s.cfg.Seed, q.hash^mix64(req.items[i].hash), 2)
	return (float64(shared) + 0.5*draw) / float64(len(qw)+1)
}

// moderationCategories are OpenAI's moderation categories the simulator
// scores.
var moderationCategories = [...]string{"harassment", "hate", "self-harm", "sexual", "violence"}

// moderationExponent shapes a category's score, a uniform draw d raised
// to it: mostly near 0, over 0.5 when d > 0.5^(1/344), for 0.2% of inputs
// a category, so about one input in a hundred over the five. (A 7th
// power flagged 40%.)
const moderationExponent = 344

// moderate scores an input in each category from its hash: low scores,
// flagged (over 0.5) for about one input in a hundred.
func (s *Server) moderate(it poolItem) moderationResult {
	r := moderationResult{Categories: map[string]bool{}, CategoryScores: map[string]float64{}}
	for k, c := range moderationCategories {
		d := unitDraw(s.cfg.Seed, it.hash, uint64(3+k))
		score := math.Pow(d, moderationExponent)
		r.CategoryScores[c] = score
		r.Categories[c] = score > 0.5
		r.Flagged = r.Flagged || score > 0.5
	}
	return r
}

// tokenIDOf is the simulated tokenizer's id of a word: its index in the
// vocabulary, else a hash of it above the vocabulary's ids.
func tokenIDOf(w string) int {
	for i, v := range vocabulary {
		if v == w {
			return i
		}
	}
	h := uint64(fnvOffset64)
	for i := 0; i < len(w); i++ {
		h = (h ^ uint64(w[i])) * fnvPrime64
	}
	return len(vocabulary) + int(h%uint64(vocabSize-len(vocabulary)))
}

// wordOf is the text of a token id: a vocabulary word, or a placeholder
// naming an id only a hash gave (tokenIDOf is not invertible there).
func wordOf(id int64) string {
	if id < int64(len(vocabulary)) {
		return vocabulary[id]
	}
	return "<tok" + strconv.FormatInt(id, 10) + ">"
}

type poolUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	TotalTokens      int `json:"total_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

type rerankDocument struct {
	Text string `json:"text"`
}

type rerankResult struct {
	Index          int            `json:"index"`
	Document       rerankDocument `json:"document"`
	RelevanceScore float64        `json:"relevance_score"`
}

// rerankUsage is vLLM's RerankUsage as main has it (pooling/scoring/
// protocol.py); v0.10 held total_tokens alone. The answer carries it
// before the results.
type rerankUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

type rerankResponse struct {
	ID      string         `json:"id"`
	Model   string         `json:"model"`
	Usage   rerankUsage    `json:"usage"`
	Results []rerankResult `json:"results"`
}

type scoreData struct {
	Index  int     `json:"index"`
	Object string  `json:"object"`
	Score  float64 `json:"score"`
}

type scoreResponse struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	Created int64       `json:"created"`
	Model   string      `json:"model"`
	Data    []scoreData `json:"data"`
	Usage   poolUsage   `json:"usage"`
}

type classifyData struct {
	Index      int       `json:"index"`
	Label      string    `json:"label"`
	Probs      []float64 `json:"probs"`
	NumClasses int       `json:"num_classes"`
}

type classifyResponse struct {
	ID      string         `json:"id"`
	Object  string         `json:"object"`
	Created int64          `json:"created"`
	Model   string         `json:"model"`
	Data    []classifyData `json:"data"`
	Usage   poolUsage      `json:"usage"`
}

type poolingData struct {
	Index  int       `json:"index"`
	Object string    `json:"object"`
	Data   []float32 `json:"data"`
}

type poolingResponse struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Data    []poolingData `json:"data"`
	Usage   poolUsage     `json:"usage"`
}

type moderationResult struct {
	Flagged        bool               `json:"flagged"`
	Categories     map[string]bool    `json:"categories"`
	CategoryScores map[string]float64 `json:"category_scores"`
}

type moderationResponse struct {
	ID      string             `json:"id"`
	Model   string             `json:"model"`
	Results []moderationResult `json:"results"`
}

type tokenizeResponse struct {
	Count       int   `json:"count"`
	MaxModelLen int   `json:"max_model_len"`
	Tokens      []int `json:"tokens"`
}

type detokenizeResponse struct {
	Prompt string `json:"prompt"`
}
