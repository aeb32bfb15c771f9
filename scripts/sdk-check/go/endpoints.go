package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// endpointChecks: the model-addressed endpoints the SDK has methods for
// (moderations, audio transcriptions and translations) through those
// methods, and vLLM's rerank and tokenize, which it has none for, through
// its documented generic Client.Post. The audio checks are the gateway's
// multipart parser against the SDK's own encoder (apiform: its boundary,
// part headers, field order and filename), with a real WAV file.
func (r *runner) endpointChecks(c openai.Client) {
	r.check("moderations.new (string)", func() (string, error) {
		m, err := c.Moderations.New(r.ctx, openai.ModerationNewParams{
			Model: openai.ModerationModel(r.model),
			Input: openai.ModerationNewParamsInputUnion{OfString: openai.String("a sluice gate")},
		})
		if err != nil {
			return "", err
		}
		if m.ID == "" || m.Model != r.model || len(m.Results) != 1 || !m.Results[0].JSON.CategoryScores.Valid() {
			return "", fmt.Errorf("id %q model %q, %d results", m.ID, m.Model, len(m.Results))
		}
		return fmt.Sprintf("id %s, %d result, flagged %v, violence score %.3f", m.ID, len(m.Results),
			m.Results[0].Flagged, m.Results[0].CategoryScores.Violence), nil
	})
	r.check("moderations.new (array)", func() (string, error) {
		m, err := c.Moderations.New(r.ctx, openai.ModerationNewParams{
			Model: openai.ModerationModel(r.model),
			Input: openai.ModerationNewParamsInputUnion{OfStringArray: []string{"a sluice", "a gate", "a weir"}},
		})
		if err != nil {
			return "", err
		}
		if len(m.Results) != 3 {
			return "", fmt.Errorf("%d results, want 3", len(m.Results))
		}
		return fmt.Sprintf("%d results, harassment flagged %v/%v/%v", len(m.Results),
			m.Results[0].Categories.Harassment, m.Results[1].Categories.Harassment, m.Results[2].Categories.Harassment), nil
	})
	wav := sineWAV(16000, 0.5)
	transcription := func(format openai.AudioResponseFormat) openai.AudioTranscriptionNewParams {
		return openai.AudioTranscriptionNewParams{
			File:           openai.File(bytes.NewReader(wav), "tone.wav", "audio/wav"),
			Model:          openai.AudioModel(r.model),
			Language:       openai.String("en"),
			Temperature:    openai.Float(0),
			ResponseFormat: format,
		}
	}
	r.check("audio.transcriptions.new (json)", func() (string, error) {
		t, err := c.Audio.Transcriptions.New(r.ctx, transcription(openai.AudioResponseFormatJSON))
		if err != nil {
			return "", err
		}
		tr := t.AsTranscription()
		if tr.Text == "" || !tr.JSON.Text.Valid() {
			return "", fmt.Errorf("no text in %s", t.RawJSON())
		}
		return fmt.Sprintf("%d-byte WAV: Transcription.Text %d chars", len(wav), len(tr.Text)), nil
	})
	r.check("audio.transcriptions.new (verbose)", func() (string, error) {
		t, err := c.Audio.Transcriptions.New(r.ctx, transcription(openai.AudioResponseFormatVerboseJSON))
		if err != nil {
			return "", err
		}
		v := t.AsTranscriptionVerbose()
		if v.Text == "" || v.Duration <= 0 {
			return "", fmt.Errorf("text %d chars, duration %v in %s", len(v.Text), v.Duration, t.RawJSON())
		}
		return fmt.Sprintf("TranscriptionVerbose: %d chars, language %q, duration %.2f s, %d segments",
			len(v.Text), v.Language, v.Duration, len(v.Segments)), nil
	})
	r.check("audio.translations.new", func() (string, error) {
		// Deprecated by OpenAI (whisper-1, shut down 2027-02-26); vLLM
		// serves it for Whisper models, and this is the SDK's call for it.
		//lint:ignore SA1019 the gateway relays /v1/audio/translations to vLLM
		t, err := c.Audio.Translations.New(r.ctx, openai.AudioTranslationNewParams{
			File:  openai.File(bytes.NewReader(wav), "tone.wav", "audio/wav"),
			Model: openai.AudioModel(r.model),
		})
		if err != nil {
			return "", err
		}
		if t.Text == "" {
			return "", fmt.Errorf("no text in %s", t.RawJSON())
		}
		return fmt.Sprintf("Translation.Text %d chars", len(t.Text)), nil
	})
	// Without stream the gateway relays JSON answers only: a text answer
	// is refused before it is forwarded, as the SDK's *openai.Error
	// naming the field (the SDK documents Client.Post for text answers).
	r.check("transcription text: 400", func() (string, error) {
		var text string
		err := c.Post(r.ctx, "audio/transcriptions", transcription(openai.AudioResponseFormatText), &text)
		return wantParam400(err, "response_format")
	})
	// A stream is relayed: the simulator answers vLLM's transcription.chunk
	// events, which the SDK's stream decodes into its event union (their
	// "type" empty, the deltas in RawJSON) up to [DONE].
	r.check("transcription stream", func() (string, error) {
		s := c.Audio.Transcriptions.NewStreaming(r.ctx, transcription(openai.AudioResponseFormatJSON))
		defer s.Close()
		var text strings.Builder
		events := 0
		for s.Next() {
			var chunk struct {
				Object  string `json:"object"`
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if err := json.Unmarshal([]byte(s.Current().RawJSON()), &chunk); err != nil || chunk.Object != "transcription.chunk" {
				return "", fmt.Errorf("event %s: %v", s.Current().RawJSON(), err)
			}
			for _, ch := range chunk.Choices {
				text.WriteString(ch.Delta.Content)
			}
			events++
		}
		if s.Err() != nil || events == 0 || text.Len() == 0 {
			return "", fmt.Errorf("%d events, %d chars: %v", events, text.Len(), s.Err())
		}
		return fmt.Sprintf("%d transcription.chunk events, %d chars", events, text.Len()), nil
	})
	r.check("transcription stream verbose_json: 400", func() (string, error) {
		s := c.Audio.Transcriptions.NewStreaming(r.ctx, transcription(openai.AudioResponseFormatVerboseJSON))
		defer s.Close()
		for s.Next() {
			return "", fmt.Errorf("an event %s, want no stream", s.Current().RawJSON())
		}
		return wantParam400(s.Err(), "response_format")
	})
	r.check("rerank (Client.Post)", func() (string, error) {
		var res struct {
			Results []struct {
				Index          int     `json:"index"`
				RelevanceScore float64 `json:"relevance_score"`
			} `json:"results"`
		}
		body := map[string]any{"model": r.model, "query": "a sluice", "documents": []string{"a gate", "a weir", "a lock"}, "top_n": 2}
		if err := c.Post(r.ctx, "rerank", body, &res); err != nil {
			return "", err
		}
		if len(res.Results) != 2 || res.Results[0].RelevanceScore < res.Results[1].RelevanceScore {
			return "", fmt.Errorf("results %+v, want the top 2 by score", res.Results)
		}
		return fmt.Sprintf("top_n 2 of 3: indexes %d, %d", res.Results[0].Index, res.Results[1].Index), nil
	})
	r.check("tokenize (Client.Post, root path)", func() (string, error) {
		var res struct {
			Count  int   `json:"count"`
			Tokens []int `json:"tokens"`
		}
		// vLLM serves /tokenize beside /v1, not under it.
		root := option.WithBaseURL(strings.TrimSuffix(r.base, "/v1") + "/")
		var raw *http.Response
		if err := c.Post(r.ctx, "tokenize", map[string]any{"model": r.model, "prompt": "what is a sluice"}, &res, root, option.WithResponseInto(&raw)); err != nil {
			return "", err
		}
		if res.Count == 0 || res.Count != len(res.Tokens) {
			return "", fmt.Errorf("count %d, %d tokens", res.Count, len(res.Tokens))
		}
		return fmt.Sprintf("%s: count %d", raw.Request.URL.Path, res.Count), nil
	})
}

// wantParam400 passes when err is the SDK's *openai.Error for the
// gateway's 400 naming param.
func wantParam400(err error, param string) (string, error) {
	e, aerr := apiError(err)
	if aerr != nil {
		return "", aerr
	}
	if e.StatusCode != 400 || e.Type != "invalid_request_error" || e.Param != param {
		return "", fmt.Errorf("status %d type %q code %q param %q: %s", e.StatusCode, e.Type, e.Code, e.Param, e.Message)
	}
	return fmt.Sprintf("*openai.Error %d code %s param %s", e.StatusCode, e.Code, e.Param), nil
}

// sineWAV is a real RIFF/WAVE file: mono 16-bit PCM at rate Hz, secs
// seconds of a 440 Hz tone.
func sineWAV(rate int, secs float64) []byte {
	n := int(float64(rate) * secs)
	var b bytes.Buffer
	w := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	w(uint32(36 + 2*n))
	b.WriteString("WAVEfmt ")
	w(uint32(16))
	w(uint16(1)) // PCM
	w(uint16(1)) // mono
	w(uint32(rate))
	w(uint32(2 * rate)) // byte rate
	w(uint16(2))        // block align
	w(uint16(16))       // bits per sample
	b.WriteString("data")
	w(uint32(2 * n))
	for i := range n {
		w(int16(8000 * math.Sin(2*math.Pi*440*float64(i)/float64(rate))))
	}
	return b.Bytes()
}
