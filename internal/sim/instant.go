package sim

import (
	"encoding/json"
	"net/http"
	"time"
)

// instantWords is the fixed completion of Instant mode, one token per word.
var instantWords = [...]string{"the", "sluice", "gate", "opens"}

// instantBodies holds every Instant-mode response precomputed, so a request
// costs one parse, a few appends and one write: the simulator stays far
// cheaper than the gateway it is used to measure.
type instantBodies struct {
	chatHead, textHead     []byte // non-stream body up to and including `"usage":`
	chatStream, textStream []byte // all token events and the final event
	chatEnc, textEnc       chunkEncoder
	chatHalf, textHalf     int // byte offset after half the token events (DisconnectRate)
}

func newInstantBodies(cfg Config, modelJSON []byte, now time.Time) *instantBodies {
	created := now.Unix()
	ib := &instantBodies{
		chatEnc: newChunkEncoder(kindChat, "chatcmpl-sim-instant", created, modelJSON),
		textEnc: newChunkEncoder(kindCompletion, "cmpl-sim-instant", created, modelJSON),
	}
	text := ""
	for i, w := range instantWords {
		text += w + " "
		ib.chatStream = ib.chatEnc.token(ib.chatStream, w, i == 0)
		ib.textStream = ib.textEnc.token(ib.textStream, w, i == 0)
		if i+1 == len(instantWords)/2 {
			ib.chatHalf, ib.textHalf = len(ib.chatStream), len(ib.textStream)
		}
	}
	ib.chatStream = ib.chatEnc.final(ib.chatStream)
	ib.textStream = ib.textEnc.final(ib.textStream)

	// Build the non-stream bodies with encoding/json so they are exact, then
	// cut them just before the usage value, which varies per request.
	ib.chatHead = headBefore(chatCompletion{
		ID: "chatcmpl-sim-instant", Object: "chat.completion", Created: created, Model: cfg.Model,
		Choices: []chatChoice{{Message: chatMessage{Role: "assistant", Content: text}, FinishReason: "length"}},
	})
	ib.textHead = headBefore(textCompletion{
		ID: "cmpl-sim-instant", Object: "text_completion", Created: created, Model: cfg.Model,
		Choices: []textChoice{{Text: text, FinishReason: "length"}},
	})
	return ib
}

// headBefore marshals v (whose last field is a zero usage) and returns the
// bytes before the usage object.
func headBefore(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // fixed plain structs: cannot happen
	}
	zero := appendUsage(nil, usage{})
	return b[:len(b)-len(zero)-1] // drop `{…zero usage…}}`
}

// serveInstant answers at once with the fixed completion.
func (s *Server) serveInstant(w http.ResponseWriter, req *request, cut bool) {
	ib := s.instant
	completion := len(instantWords)
	s.st.promptTokens.Add(int64(req.promptTokens))
	s.st.generatedTokens.Add(int64(completion))
	u := usage{PromptTokens: req.promptTokens, CompletionTokens: completion, TotalTokens: req.promptTokens + completion}
	h := w.Header()
	if !req.stream {
		if cut {
			s.st.disconnected.Add(1)
			panic(http.ErrAbortHandler)
		}
		head := ib.textHead
		if req.kind == kindChat {
			head = ib.chatHead
		}
		b := make([]byte, 0, len(head)+96)
		b = append(b, head...)
		b = appendUsage(b, u)
		b = append(b, '}')
		h.Set("Content-Type", "application/json")
		w.Write(b)
		s.st.completed.Add(1)
		return
	}
	events, enc, half := ib.textStream, &ib.textEnc, ib.textHalf
	if req.kind == kindChat {
		events, enc, half = ib.chatStream, &ib.chatEnc, ib.chatHalf
	}
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	if cut {
		w.Write(events[:half])
		http.NewResponseController(w).Flush()
		s.st.disconnected.Add(1)
		panic(http.ErrAbortHandler)
	}
	// The few events go out in one write and one flush: still separate SSE
	// events for the client to parse, without a syscall per token.
	b := make([]byte, 0, len(events)+len(enc.head)+128)
	b = append(b, events...)
	if req.includeUsage {
		b = enc.usageChunk(b, u)
	}
	b = append(b, doneEvent...)
	w.Write(b)
	http.NewResponseController(w).Flush()
	s.st.completed.Add(1)
}
