package sim

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
)

// The audio endpoints, /v1/audio/transcriptions and
// /v1/audio/translations (vLLM serves them for Whisper models), take a
// multipart/form-data body with the audio in "file". The simulator does
// not decode audio: the file's size stands for its length, and the text
// is generated as a completion's is.

// audioBytesPerToken is how many bytes of a file make one prompt token:
// Whisper's encoder has 50 positions per second of audio, and a
// compressed file holds about 16 kB a second.
const audioBytesPerToken = 320

// audioRequest is what the simulator reads of an audio request.
type audioRequest struct {
	model        string
	format       string // response_format: json (default), verbose_json or text
	promptTokens int    // ceil(file bytes / audioBytesPerToken), at least 1
	promptHash   uint64 // of the file's bytes: seeds the text
	stream       bool   // stream=true: an event stream (audio_stream.go)
	includeUsage bool   // vLLM's stream_include_usage: a usage chunk before [DONE]
}

// maxAudioField bounds a form field's value the simulator reads.
const maxAudioField = 1024

// parseAudioRequest reads an audio request's form strictly: the
// Content-Type must be multipart/form-data with a boundary; "file" is
// required, once; "model", "response_format", "stream" and
// "stream_include_usage" are read (a repeated one is refused), other
// fields ignored; errors name the field. As vLLM, it refuses verbose_json
// with stream.
func parseAudioRequest(contentType string, body []byte) (audioRequest, error) {
	req := audioRequest{format: "json"}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return req, badRequest("", "the body must be multipart/form-data with a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	seen := map[string]bool{}
	fileBytes := -1
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return req, badRequest("", "the multipart body is malformed")
		}
		name := part.FormName()
		switch name {
		case "file", "model", "response_format", "stream", "stream_include_usage":
		default:
			if _, err := io.Copy(io.Discard, part); err != nil {
				return req, badRequest("", "the multipart body is malformed")
			}
			continue
		}
		if seen[name] {
			return req, badRequest(name, "%s appears more than once", name)
		}
		seen[name] = true
		if name == "file" {
			h := uint64(fnvOffset64)
			n, err := io.Copy(hashWriter{&h}, part)
			if err != nil {
				return req, badRequest("file", "the multipart body is malformed")
			}
			fileBytes, req.promptHash = int(n), h
			continue
		}
		v, err := io.ReadAll(io.LimitReader(part, maxAudioField+1))
		if err != nil {
			return req, badRequest("", "the multipart body is malformed")
		}
		if len(v) > maxAudioField {
			return req, badRequest(name, "%s is too long", name)
		}
		switch s := string(v); name {
		case "model":
			req.model = s
		case "response_format":
			switch s {
			case "json", "verbose_json", "text":
				req.format = s
			default:
				return req, badRequest(name, "response_format must be json, verbose_json or text (the simulator writes no subtitles)")
			}
		case "stream", "stream_include_usage":
			var on bool
			switch strings.ToLower(s) {
			case "false", "0", "":
			case "true", "1":
				on = true
			default:
				return req, badRequest(name, "%s must be a boolean", name)
			}
			if name == "stream" {
				req.stream = on
			} else {
				req.includeUsage = on
			}
		}
	}
	if fileBytes < 0 {
		return req, badRequest("file", "file is required")
	}
	if req.stream && req.format == "verbose_json" {
		return req, badRequest("response_format", "verbose_json format doesn't support streaming case")
	}
	req.promptTokens = max(1, (fileBytes+audioBytesPerToken-1)/audioBytesPerToken)
	return req, nil
}

// hashWriter folds what is written into an FNV-1a hash.
type hashWriter struct{ h *uint64 }

func (w hashWriter) Write(b []byte) (int, error) {
	h := *w.h
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime64
	}
	*w.h = h
	return len(b), nil
}

// handleAudio serves the audio endpoints. Stage order: parse → model
// check → faults → (Instant answer | engine: the file's tokens prefilled,
// DefaultMaxTokens words generated) → answer, whole or streamed
// (streamAudio, which alone takes the DisconnectRate fault).
func (s *Server) handleAudio(w http.ResponseWriter, r *http.Request) {
	ctype := r.Header.Get("Content-Type")
	req, n, ok := readParsed(s, w, r, func(b []byte) (audioRequest, error) { return parseAudioRequest(ctype, b) })
	if !ok || !s.servesModel(w, req.model) {
		return
	}
	v := s.applyFaults(r.Context(), w, n)
	if v == handled {
		return
	}
	words := s.cfg.DefaultMaxTokens
	if !s.cfg.Instant && req.promptTokens+words > s.cfg.KVTokens {
		writeErrorParam(w, http.StatusBadRequest, "invalid_request_error", "context_length_exceeded", "file",
			"the audio is longer than the model's context")
		return
	}
	if req.stream {
		s.streamAudio(w, r, req, words, n, v == proceedCut)
		return
	}
	if !s.cfg.Instant {
		sq := s.submit(w, &request{promptTokens: req.promptTokens, maxTokens: words})
		if sq == nil {
			return
		}
		defer s.leave(sq)
		if _, err := sq.wait(r.Context(), words); err != nil {
			s.failSeq(w, err, false)
			return
		}
	}
	gen := newTextGen(s.cfg.Seed, req.promptHash)
	text := strings.TrimSpace(string(gen.appendText(nil, words)))
	switch req.format {
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, text+"\n")
	case "verbose_json":
		task := "transcribe"
		if r.URL.Path == "/v1/audio/translations" {
			task = "translate"
		}
		writeJSON(w, http.StatusOK, struct {
			Task     string  `json:"task"`
			Language string  `json:"language"`
			Duration float64 `json:"duration"`
			Text     string  `json:"text"`
		}{task, "english", float64(req.promptTokens) / 50, text})
	default:
		if r.URL.Path == "/v1/audio/translations" {
			writeJSON(w, http.StatusOK, struct {
				Text string `json:"text"`
			}{text})
			break
		}
		// vLLM's TranscriptionResponse reports the audio's length in whole
		// seconds, as whisper-1 does, and no tokens.
		writeJSON(w, http.StatusOK, struct {
			Text  string        `json:"text"`
			Usage durationUsage `json:"usage"`
		}{text, durationUsage{Type: "duration", Seconds: (req.promptTokens + 49) / 50}})
	}
	s.st.completed.Add(1)
}

// durationUsage is a transcription's usage by vLLM and whisper-1: the
// audio's length, rounded up to a second.
type durationUsage struct {
	Type    string `json:"type"`
	Seconds int    `json:"seconds"`
}
