package sim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
)

// embeddingDim is the length of every simulated embedding vector.
const embeddingDim = 16

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat *string         `json:"encoding_format"`
}

type embeddingData struct {
	Object    string    `json:"object"`
	Index     int       `json:"index"`
	Embedding []float32 `json:"embedding"`
}

// embeddingBase64 is an embedding as encoding_format "base64" sends it:
// the vector's float32s, little-endian, base64-encoded (OpenAI's and
// vLLM's encoding). The official Node SDK asks for it whenever its caller
// names no format, and decodes it back.
type embeddingBase64 struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding string `json:"embedding"`
}

func (d embeddingData) base64() embeddingBase64 {
	b := make([]byte, 4*len(d.Embedding))
	for i, x := range d.Embedding {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return embeddingBase64{Object: d.Object, Index: d.Index, Embedding: base64.StdEncoding.EncodeToString(b)}
}

// embeddingBase64Response is embeddingResponse with base64 vectors.
type embeddingBase64Response struct {
	Object string            `json:"object"`
	Data   []embeddingBase64 `json:"data"`
	Model  string            `json:"model"`
	Usage  any               `json:"usage"`
}

// wantBase64 reads encoding_format: "float" (or none, or null) and
// "base64" are the two OpenAI and vLLM accept; anything else is their 400
// naming the field.
func wantBase64(f *string) (bool, error) {
	switch {
	case f == nil || *f == "float":
		return false, nil
	case *f == "base64":
		return true, nil
	}
	return false, badRequest("encoding_format", "encoding_format must be 'float' or 'base64'")
}

type embeddingResponse struct {
	Object string          `json:"object"`
	Data   []embeddingData `json:"data"`
	Model  string          `json:"model"`
	Usage  struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// handleEmbeddings answers at once, without the engine: embeddings are not
// what the gateway's scheduling is about, but clients expect the endpoint.
// Each input gets a unit vector derived from the seed and the input's words.
func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	er, n, ok := readParsed(s, w, r, func(b []byte) (er embeddingRequest, err error) {
		if err = json.Unmarshal(b, &er); err != nil {
			err = badBody(&er, err)
		}
		return er, err
	})
	if !ok || !s.servesModel(w, er.Model) {
		return
	}
	inputs, err := splitInputs(er.Input)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	b64, err := wantBase64(er.EncodingFormat)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	if s.applyFaults(r.Context(), w, n) == handled {
		return
	}
	resp := embeddingResponse{Object: "list", Model: s.cfg.Model, Data: make([]embeddingData, len(inputs))}
	for i, in := range inputs {
		sc := promptScanner{hash: fnvOffset64}
		if err := scanPrompt(&sc, in, inputField(len(inputs), i)); err != nil {
			writeRequestError(w, err)
			return
		}
		resp.Usage.PromptTokens += sc.tokens
		resp.Data[i] = embeddingData{Object: "embedding", Index: i, Embedding: embed(s.cfg.Seed, sc.hash)}
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens
	if b64 {
		out := embeddingBase64Response{Object: resp.Object, Model: resp.Model, Usage: resp.Usage, Data: make([]embeddingBase64, len(resp.Data))}
		for i, d := range resp.Data {
			out.Data[i] = d.base64()
		}
		writeJSON(w, http.StatusOK, out)
	} else {
		writeJSON(w, http.StatusOK, resp)
	}
	s.st.completed.Add(1)
}

// maxInputs is how many inputs one request may carry, as OpenAI's
// CreateEmbeddingRequest allows (an array of at most 2048): without a
// bound a client's count sized the reply (1M inputs built about 500 MB).
const maxInputs = 2048

// splitInputs turns "input" (a string, token ids, or an array of either)
// into one prompt-shaped value per embedding to return; scanPrompt reads
// each (a string or an array of token ids).
func splitInputs(raw json.RawMessage) ([]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("input", "input is required")
	}
	if raw[0] != '[' {
		return []json.RawMessage{raw}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badJSON("input", err)
	}
	if len(items) == 0 {
		return nil, badRequest("input", "input must not be empty")
	}
	if items[0][0] != '"' && items[0][0] != '[' {
		return []json.RawMessage{raw}, nil // one input given as token ids
	}
	if len(items) > maxInputs {
		return nil, badRequest("input", "input has %d items; at most %d are allowed", len(items), maxInputs)
	}
	return items, nil
}

// embed derives a deterministic unit vector from seed and the input hash.
func embed(seed int64, h uint64) []float32 {
	v := make([]float32, embeddingDim)
	var norm float64
	for i := range v {
		x := unitDraw(seed, h, uint64(i)) - 0.5
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		return v
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}

// inputField names input i of n in errors: "input" when it was given alone.
func inputField(n, i int) string {
	if n == 1 {
		return "input"
	}
	return "input[" + strconv.Itoa(i) + "]"
}
