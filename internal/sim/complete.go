package sim

import (
	"context"
	"errors"
	"net/http"
	"strconv"
)

// handleCompletion serves /v1/chat/completions and /v1/completions. Stage
// order: parse → model check → faults → (Instant answer | engine).
func (s *Server) handleCompletion(kind endpointKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		blockSize := s.cfg.BlockSize
		if s.cfg.Instant {
			blockSize = 0 // no prefix cache to feed
		}
		req, n, ok := readParsed(s, w, r, func(b []byte) (request, error) {
			return parseRequest(kind, b, blockSize, s.cfg.DefaultMaxTokens)
		})
		if !ok || !s.servesModel(w, req.model) {
			return
		}
		v := s.applyFaults(r.Context(), w, n)
		if v == handled {
			return
		}
		if s.cfg.Instant {
			s.serveInstant(w, &req, v == proceedCut)
			return
		}
		if need := req.promptTokens + req.maxTokens; req.maxTokens > s.cfg.KVTokens || need > s.cfg.KVTokens {
			// Never admissible: answer like vLLM does for max_model_len.
			writeError(w, http.StatusBadRequest, "invalid_request_error", "context_length_exceeded",
				"This model's maximum context length is "+strconv.Itoa(s.cfg.KVTokens)+" tokens. However, you requested "+
					strconv.Itoa(req.maxTokens)+" output tokens and your prompt contains "+strconv.Itoa(req.promptTokens)+
					" tokens. Please reduce the length of the messages or completion.")
			return
		}
		s.generate(r.Context(), w, &req, n, v == proceedCut)
	}
}

// generate runs the request through the engine and writes the answer.
func (s *Server) generate(ctx context.Context, w http.ResponseWriter, req *request, n uint64, cut bool) {
	sq := s.submit(w, req)
	if sq == nil {
		return
	}
	// Whatever way this handler leaves (including the panic that cuts a
	// connection), the engine must stop spending a slot on it.
	defer s.leave(sq)
	rs := respState{
		s: s, w: w, ctx: ctx, req: req, sq: sq,
		id:      s.responseID(req.kind, n),
		created: s.now().Unix(),
		gen:     newTextGen(s.cfg.Seed, req.promptHash),
		cutAt:   -1,
	}
	if cut {
		rs.cutAt = req.maxTokens / 2
	}
	if req.stream {
		rs.stream()
	} else {
		rs.whole()
	}
}

// submit queues req in the engine. When the engine refuses it (queue full,
// server closed) submit answers the client and returns nil; otherwise the
// caller owns the sequence and must defer s.leave(sq).
func (s *Server) submit(w http.ResponseWriter, req *request) *seq {
	sq := newSeq(req)
	switch err := s.eng.enqueue(sq); {
	case errors.Is(err, errBusy):
		s.st.rejected.Add(1)
		writeBusy(w)
		return nil
	case err != nil:
		s.st.errors.Add(1)
		writeShuttingDown(w)
		return nil
	}
	return sq
}

// leave takes sq out of the engine unless it already ended.
func (s *Server) leave(sq *seq) {
	select {
	case <-sq.done:
	default:
		s.eng.abandon(sq)
	}
}

func (s *Server) responseID(kind endpointKind, n uint64) string {
	prefix := "cmpl-sim"
	if kind == kindChat {
		prefix = "chatcmpl-sim"
	}
	return prefix + strconv.FormatUint(uint64(s.cfg.Seed)&0xffff, 16) + "-" + strconv.FormatUint(n, 10)
}

// respState is one in-flight engine response.
type respState struct {
	s       *Server
	w       http.ResponseWriter
	ctx     context.Context
	req     *request
	sq      *seq
	id      string
	created int64
	gen     textGen
	cutAt   int // cut the connection after this many tokens; -1 = never
}

// fail ends a response whose sequence stopped early: the client left
// (counted as a cancel) or the server closed.
func (rs *respState) fail(err error, headersSent bool) { rs.s.failSeq(rs.w, err, headersSent) }

// cut aborts the connection: the DisconnectRate fault.
func (rs *respState) cut() { rs.s.cutConn() }

// failSeq ends a response whose sequence stopped early: the client left
// (counted as a cancel) or the server closed.
func (s *Server) failSeq(w http.ResponseWriter, err error, headersSent bool) {
	if errors.Is(err, errClosed) {
		s.st.errors.Add(1)
		if headersSent {
			panic(http.ErrAbortHandler) // a stream cannot be failed politely
		}
		writeShuttingDown(w)
		return
	}
	s.st.cancelled.Add(1)
}

// cutConn aborts the connection without a proper end: the DisconnectRate
// fault. net/http treats http.ErrAbortHandler as a silent abort of the
// connection.
func (s *Server) cutConn() {
	s.st.disconnected.Add(1)
	panic(http.ErrAbortHandler)
}

func (rs *respState) whole() {
	want := rs.req.maxTokens
	if rs.cutAt >= 0 {
		want = rs.cutAt
	}
	if _, err := rs.sq.wait(rs.ctx, want); err != nil {
		rs.fail(err, false)
		return
	}
	if rs.cutAt >= 0 {
		rs.cut()
	}
	text := string(rs.gen.appendText(make([]byte, 0, rs.req.maxTokens*8), rs.req.maxTokens))
	u := newUsage(rs.req.promptTokens, rs.req.maxTokens, int(rs.sq.cached.Load()))
	var body any
	if rs.req.kind == kindChat {
		body = chatCompletion{
			ID: rs.id, Object: "chat.completion", Created: rs.created, Model: rs.s.cfg.Model,
			Choices: []chatChoice{{Message: chatMessage{Role: "assistant", Content: text}, FinishReason: "length"}},
			Usage:   u,
		}
	} else {
		body = textCompletion{
			ID: rs.id, Object: "text_completion", Created: rs.created, Model: rs.s.cfg.Model,
			Choices: []textChoice{{Text: text, FinishReason: "length"}},
			Usage:   u,
		}
	}
	writeJSON(rs.w, http.StatusOK, body)
	rs.s.st.completed.Add(1)
}

// stream sends one SSE event per token, flushed as soon as the engine
// produces it. Headers go out at once, as vLLM's do, so queueing time shows
// up as time to first token rather than time to headers.
func (rs *respState) stream() {
	h := rs.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	rs.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(rs.w)
	if err := rc.Flush(); err != nil {
		rs.fail(rs.ctx.Err(), true)
		return
	}
	enc := newChunkEncoder(rs.req.kind, rs.id, rs.created, rs.s.modelJSON)
	buf := make([]byte, 0, 512)
	sent, total := 0, rs.req.maxTokens
	for sent < total {
		if sent == rs.cutAt {
			rs.cut()
		}
		p, err := rs.sq.wait(rs.ctx, sent+1)
		if err != nil {
			rs.fail(err, true)
			return
		}
		if rs.cutAt >= 0 && p > rs.cutAt {
			p = rs.cutAt
		}
		buf = buf[:0]
		for ; sent < p; sent++ {
			buf = enc.token(buf, rs.gen.next(), sent == 0)
		}
		if !rs.write(rc, buf) {
			return
		}
	}
	buf = enc.final(buf[:0])
	if rs.req.includeUsage {
		buf = enc.usageChunk(buf, newUsage(rs.req.promptTokens, total, int(rs.sq.cached.Load())))
	}
	buf = append(buf, doneEvent...)
	if rs.write(rc, buf) {
		rs.s.st.completed.Add(1)
	}
}

// write sends and flushes b (Server.send).
func (rs *respState) write(rc *http.ResponseController, b []byte) bool { return rs.s.send(rs.w, rc, b) }

// send writes and flushes b, a stream's next events; a failure means the
// client is gone, and is counted as a cancel.
func (s *Server) send(w http.ResponseWriter, rc *http.ResponseController, b []byte) bool {
	if _, err := w.Write(b); err != nil {
		s.st.cancelled.Add(1)
		return false
	}
	if err := rc.Flush(); err != nil {
		s.st.cancelled.Add(1)
		return false
	}
	return true
}

// Non-streaming response bodies (OpenAI shapes).
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   usage        `json:"usage"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	Logprobs     *struct{}   `json:"logprobs"`
	FinishReason string      `json:"finish_reason"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type textCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []textChoice `json:"choices"`
	Usage   usage        `json:"usage"`
}

type textChoice struct {
	Index        int       `json:"index"`
	Text         string    `json:"text"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason string    `json:"finish_reason"`
}
