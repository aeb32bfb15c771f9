package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
)

// The model-addressed endpoints beyond generation (the README's "Rerank,
// score, classify, pooling, moderations, tokenize, audio"): 8% of the mix,
// each answer checked against what the simulator answers
// (internal/sim/pooling.go, audio.go), not only its status. They hold no
// state across requests, so a disturbance (d.resp's epoch) excuses only
// an answer that says its backend went away: a cut, a 502/503/504.

// endpoint sends one request to one of the endpoints: rerank 25%, score
// 20%, tokenize then detokenize 20%, moderations 15%, audio 20% (a
// quarter of it translations).
func (d *driver) endpoint(ctx context.Context, c *http.Client) {
	switch p := d.intn(100); {
	case p < 25:
		d.rerank(ctx, c)
	case p < 45:
		d.score(ctx, c)
	case p < 65:
		d.tokenize(ctx, c)
	case p < 80:
		d.moderations(ctx, c)
	default:
		d.audio(ctx, c)
	}
}

// texts is n short texts of the soak's words.
func (d *driver) texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		ws := make([]string, 3+d.intn(8))
		for j := range ws {
			ws[j] = words[d.intn(len(words))]
		}
		out[i] = strings.Join(ws, " ")
	}
	return out
}

func (d *driver) rerank(ctx context.Context, c *http.Client) {
	docs := d.texts(2 + d.intn(5))
	body := map[string]any{"model": "sim-model", "query": d.texts(1)[0], "documents": docs}
	topN := 0
	if d.intn(2) == 0 {
		topN = 1 + d.intn(len(docs)+1) // sometimes more than there are
		body["top_n"] = topN
	}
	path := []string{"/v1/rerank", "/rerank", "/v2/rerank"}[d.intn(3)]
	d.epCall(ctx, c, "rerank", path, "application/json", jsonOf(body), func(b []byte) error { return checkRerank(b, docs, topN) })
}

func (d *driver) score(ctx context.Context, c *http.Client) {
	t2 := d.texts(1 + d.intn(4))
	var t1 any = d.texts(1)[0]
	if d.intn(3) == 0 {
		t1 = d.texts(len(t2)) // one per text_2
	}
	path := []string{"/v1/score", "/score"}[d.intn(2)]
	body := jsonOf(map[string]any{"model": "sim-model", "text_1": t1, "text_2": t2})
	d.epCall(ctx, c, "score", path, "application/json", body, func(b []byte) error { return checkScore(b, len(t2)) })
}

// tokenize tokenizes a prompt and detokenizes the ids it got back.
func (d *driver) tokenize(ctx context.Context, c *http.Client) {
	prompt := d.texts(1)[0]
	var ids []int
	body := jsonOf(map[string]any{"model": "sim-model", "prompt": prompt})
	if !d.epCall(ctx, c, "tokenize", "/tokenize", "application/json", body, func(b []byte) (err error) {
		ids, err = checkTokenize(b, strings.Fields(prompt))
		return err
	}) {
		return
	}
	body = jsonOf(map[string]any{"model": "sim-model", "tokens": ids})
	d.epCall(ctx, c, "detokenize", "/detokenize", "application/json", body, func(b []byte) error {
		return checkDetokenize(b, strings.Fields(prompt), ids)
	})
}

func (d *driver) moderations(ctx context.Context, c *http.Client) {
	in := d.texts(1 + d.intn(3))
	var input any = in
	if len(in) == 1 && d.intn(2) == 0 {
		input = in[0]
	}
	body := jsonOf(map[string]any{"model": "sim-model", "input": input})
	d.epCall(ctx, c, "moderations", "/v1/moderations", "application/json", body, func(b []byte) error { return checkModeration(b, len(in)) })
}

// audio sends a short generated WAV (a tone, 0.25 to 1 s at 8 kHz: 4 to
// 16 kB) as a multipart form.
func (d *driver) audio(ctx context.Context, c *http.Client) {
	kind, path, task := "audio-transcription", "/v1/audio/transcriptions", "transcribe"
	if d.intn(4) == 0 {
		kind, path, task = "audio-translation", "/v1/audio/translations", "translate"
	}
	format := []string{"json", "verbose_json"}[d.intn(2)]
	wav := toneWAV(8000, 2000+d.intn(6000), 200+float64(d.intn(800)))
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("model", "sim-model")
	mw.WriteField("response_format", format)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="tone.wav"`)
	h.Set("Content-Type", "audio/wav")
	fw, _ := mw.CreatePart(h) // a bytes.Buffer does not fail
	fw.Write(wav)
	mw.Close()
	d.epCall(ctx, c, kind, path, mw.FormDataContentType(), buf.Bytes(), func(b []byte) error {
		return checkTranscript(b, format == "verbose_json", task)
	})
}

func jsonOf(v any) []byte {
	b, _ := json.Marshal(v) // maps of strings, numbers and slices: never fails
	return b
}

// epCall POSTs one request, judges and counts its answer (check reads a
// 2xx's body) and says whether it was a 2xx of the right shape.
func (d *driver) epCall(ctx context.Context, c *http.Client, kind, path, ctype string, body []byte, check func([]byte) error) bool {
	since := d.resp.now()
	status, retryAfter, b, detail := d.epDo(ctx, c, path, ctype, body)
	if ctx.Err() != nil {
		d.count(kind, "abandoned")
		return false
	}
	outcome := respOutcome(false, status, retryAfter, d.resp.now() != since)
	if outcome == "ok" {
		if err := check(b); err != nil {
			outcome, detail = "failure", "wrong shape: "+err.Error()
		}
	}
	label := outcomeLabel(status, outcome)
	if outcome == "failure" {
		d.ep.add(fmt.Sprintf("POST %s: %s %s", path, label, detail))
	}
	d.count(kind, label)
	return outcome == "ok"
}

// epDo is one exchange: its status (0: a transport or read error), whether
// it had a Retry-After, its body when a 2xx, else a detail of it.
func (d *driver) epDo(ctx context.Context, c *http.Client, path, ctype string, body []byte) (status int, retryAfter bool, b []byte, detail string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, false, nil, err.Error()
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.Do(req)
	if err != nil {
		return 0, false, nil, err.Error()
	}
	defer resp.Body.Close()
	b, err = io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, nil, fmt.Sprintf("%d, then reading: %v", resp.StatusCode, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, resp.Header.Get("Retry-After") != "", nil, string(bytes.TrimSpace(b[:min(len(b), 300)]))
	}
	return resp.StatusCode, false, b, ""
}

// checkRerank: every document ranked once (top_n of them when set), best
// first, each with its text and a relevance in [0, 1).
func checkRerank(b []byte, docs []string, topN int) error {
	var v struct {
		ID      string `json:"id"`
		Model   string `json:"model"`
		Results []struct {
			Index    *int `json:"index"`
			Document struct {
				Text string `json:"text"`
			} `json:"document"`
			RelevanceScore *float64 `json:"relevance_score"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	want := len(docs)
	if topN > 0 {
		want = min(topN, want)
	}
	if v.ID == "" || v.Model != "sim-model" || len(v.Results) != want {
		return fmt.Errorf("id %q, model %q, %d results for %d documents, top_n %d", v.ID, v.Model, len(v.Results), len(docs), topN)
	}
	seen := map[int]bool{}
	last := math.Inf(1)
	for i, r := range v.Results {
		if r.Index == nil || *r.Index < 0 || *r.Index >= len(docs) || seen[*r.Index] {
			return fmt.Errorf("results[%d]: no index, or out of range, or repeated", i)
		}
		seen[*r.Index] = true
		if r.Document.Text != docs[*r.Index] {
			return fmt.Errorf("results[%d]: document %q is not documents[%d]", i, r.Document.Text, *r.Index)
		}
		if r.RelevanceScore == nil || *r.RelevanceScore < 0 || *r.RelevanceScore >= 1 || *r.RelevanceScore > last {
			return fmt.Errorf("results[%d]: relevance missing, out of [0, 1) or above the one before", i)
		}
		last = *r.RelevanceScore
	}
	return nil
}

// checkScore: one score in [0, 1) per text_2, in order.
func checkScore(b []byte, n int) error {
	var v struct {
		Object string `json:"object"`
		Data   []struct {
			Index  int      `json:"index"`
			Object string   `json:"object"`
			Score  *float64 `json:"score"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.Object != "list" || len(v.Data) != n {
		return fmt.Errorf("object %q, %d scores for %d texts", v.Object, len(v.Data), n)
	}
	for i, s := range v.Data {
		if s.Index != i || s.Object != "score" || s.Score == nil || *s.Score < 0 || *s.Score >= 1 {
			return fmt.Errorf("data[%d]: index %d, object %q, score missing or out of [0, 1)", i, s.Index, s.Object)
		}
	}
	return nil
}

// checkTokenize: one id per word (the simulator's tokenizer), counted,
// with the model's length; the ids.
func checkTokenize(b []byte, words []string) ([]int, error) {
	var v struct {
		Count       int   `json:"count"`
		MaxModelLen int   `json:"max_model_len"`
		Tokens      []int `json:"tokens"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	if v.Count != len(words) || len(v.Tokens) != len(words) || v.MaxModelLen <= 0 {
		return nil, fmt.Errorf("count %d, %d tokens for %d words, max_model_len %d", v.Count, len(v.Tokens), len(words), v.MaxModelLen)
	}
	for i, id := range v.Tokens {
		if id < 0 {
			return nil, fmt.Errorf("tokens[%d] = %d", i, id)
		}
	}
	return v.Tokens, nil
}

// checkDetokenize: the words back, each as sent or, for an id the
// tokenizer hashed (not invertible), its placeholder <tokID>.
func checkDetokenize(b []byte, words []string, ids []int) error {
	var v struct {
		Prompt *string `json:"prompt"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.Prompt == nil {
		return errors.New("no prompt")
	}
	got := strings.Fields(*v.Prompt)
	if len(got) != len(ids) || len(ids) != len(words) {
		return fmt.Errorf("%d words back for %d ids", len(got), len(ids))
	}
	for i, w := range got {
		if w != words[i] && w != fmt.Sprintf("<tok%d>", ids[i]) {
			return fmt.Errorf("word %d: %q for %q (id %d)", i, w, words[i], ids[i])
		}
	}
	return nil
}

// checkModeration: one result per input, each category scored in [0, 1]
// and flagged exactly when its score is over 0.5, the result flagged when
// one is.
func checkModeration(b []byte, n int) error {
	var v struct {
		ID      string `json:"id"`
		Results []struct {
			Flagged        bool               `json:"flagged"`
			Categories     map[string]bool    `json:"categories"`
			CategoryScores map[string]float64 `json:"category_scores"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.ID == "" || len(v.Results) != n {
		return fmt.Errorf("id %q, %d results for %d inputs", v.ID, len(v.Results), n)
	}
	for i, r := range v.Results {
		if len(r.Categories) == 0 || len(r.Categories) != len(r.CategoryScores) {
			return fmt.Errorf("results[%d]: %d categories, %d scores", i, len(r.Categories), len(r.CategoryScores))
		}
		some := false
		for c, flagged := range r.Categories {
			s, ok := r.CategoryScores[c]
			if !ok || s < 0 || s > 1 || flagged != (s > 0.5) {
				return fmt.Errorf("results[%d]: category %s flagged %v with score %v (scored: %v)", i, c, flagged, s, ok)
			}
			some = some || flagged
		}
		if r.Flagged != some {
			return fmt.Errorf("results[%d]: flagged %v, categories %v", i, r.Flagged, r.Categories)
		}
	}
	return nil
}

// checkTranscript: a text; verbose_json's also its task and a duration.
func checkTranscript(b []byte, verbose bool, task string) error {
	var v struct {
		Text     string  `json:"text"`
		Task     string  `json:"task"`
		Duration float64 `json:"duration"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if strings.TrimSpace(v.Text) == "" {
		return errors.New("no text")
	}
	if verbose && (v.Task != task || v.Duration <= 0) {
		return fmt.Errorf("verbose_json: task %q (want %q), duration %v", v.Task, task, v.Duration)
	}
	return nil
}

// toneWAV is a mono 16-bit PCM WAV file of n samples of a sine at freq Hz.
func toneWAV(rate, n int, freq float64) []byte {
	b := make([]byte, 44+2*n)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)             // fmt chunk size
	binary.LittleEndian.PutUint16(b[20:], 1)              // PCM
	binary.LittleEndian.PutUint16(b[22:], 1)              // mono
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))   // sample rate
	binary.LittleEndian.PutUint32(b[28:], uint32(2*rate)) // byte rate
	binary.LittleEndian.PutUint16(b[32:], 2)              // block align
	binary.LittleEndian.PutUint16(b[34:], 16)             // bits per sample
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*n))
	for i := range n {
		s := int16(8000 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(s))
	}
	return b
}
