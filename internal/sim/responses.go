package sim

import (
	"context"
	"net/http"
	"slices"
	"strconv"
)

// handleResponses serves POST /v1/responses. Stage order, as chat's: parse →
// model check → previous_response_id → faults → (Instant answer | engine).
func (s *Server) handleResponses(w http.ResponseWriter, r *http.Request) {
	rq, n, ok := readParsed(s, w, r, parseResponsesRequest)
	if !ok {
		return
	}
	if rq.model != s.cfg.Model {
		writeModelNotFound(w, rq.model)
		return
	}
	var conv []string
	if rq.previousID != nil {
		prev, ok := s.responses.get(*rq.previousID)
		if !ok {
			writeErrorParam(w, http.StatusBadRequest, "invalid_request_error", "previous_response_not_found",
				"previous_response_id", "Previous response with id '"+*rq.previousID+"' not found.")
			return
		}
		conv = prev.conversation
	}
	blockSize := s.cfg.BlockSize
	if s.cfg.Instant {
		blockSize = 0 // no prefix cache to feed
	}
	sc := respPrompt(rq.instructions, conv, rq.texts, blockSize)
	req := request{
		kind: kindResponses, model: rq.model, stream: rq.stream,
		promptTokens: sc.tokens, maxTokens: s.cfg.DefaultMaxTokens, promptHash: sc.hash, blocks: sc.blocks,
	}
	status := "completed" // no limit set: the output ends on its own
	if rq.maxOutput != nil {
		req.maxTokens, status = *rq.maxOutput, "incomplete" // it used the whole limit
	}
	v := s.applyFaults(r.Context(), w, n)
	if v == handled {
		return
	}
	suffix := s.idNonce + strconv.FormatUint(n, 16)
	run := respRun{
		s: s, w: w, ctx: r.Context(), rq: &rq, req: &req, conv: conv,
		id: "resp_" + suffix, msgID: "msg_" + suffix, created: s.now().Unix(),
		gen: newTextGen(s.cfg.Seed, req.promptHash), total: req.maxTokens, status: status, cutAt: -1,
	}
	if s.cfg.Instant {
		run.total, run.status, run.instant = len(instantWords), "completed", true
		s.st.promptTokens.Add(int64(req.promptTokens))
		s.st.generatedTokens.Add(int64(run.total))
	} else {
		if req.maxTokens > s.cfg.KVTokens || req.promptTokens+req.maxTokens > s.cfg.KVTokens {
			writeErrorParam(w, http.StatusBadRequest, "invalid_request_error", "context_length_exceeded", "input",
				"This model's maximum context length is "+strconv.Itoa(s.cfg.KVTokens)+" tokens. However, you requested "+
					strconv.Itoa(req.maxTokens)+" output tokens and your prompt contains "+strconv.Itoa(req.promptTokens)+
					" tokens. Please reduce the length of the input or max_output_tokens.")
			return
		}
		if run.sq = s.submit(w, &req); run.sq == nil {
			return
		}
		defer s.leave(run.sq)
	}
	if v == proceedCut {
		run.cutAt = run.total / 2
	}
	if rq.stream {
		run.stream()
	} else {
		run.whole()
	}
}

// respRun is one in-flight Responses request, from the engine (sq) or, in
// Instant mode, the fixed answer.
type respRun struct {
	s       *Server
	w       http.ResponseWriter
	ctx     context.Context
	rq      *respRequest
	req     *request
	sq      *seq     // nil in Instant mode
	conv    []string // previous_response_id's conversation
	id      string
	msgID   string
	created int64
	gen     textGen
	instant bool
	total   int    // output tokens
	status  string // final status: "completed" or "incomplete"
	cutAt   int    // cut the connection after this many tokens; -1 = never
	words   int    // words taken from nextWord
}

// wait blocks until want tokens exist; Instant answers have them all.
func (rr *respRun) wait(want int) (int, error) {
	if rr.sq == nil {
		return rr.total, nil
	}
	return rr.sq.wait(rr.ctx, want)
}

func (rr *respRun) nextWord() string {
	i := rr.words
	rr.words++
	if rr.instant {
		return instantWords[i]
	}
	return rr.gen.next()
}

func (rr *respRun) cached() int {
	if rr.sq == nil {
		return 0
	}
	return int(rr.sq.cached.Load())
}

// final builds the finished response and its JSON and, if the request
// asked for it, stores it before the client can see it, so a GET or a
// follow-up sent on receipt always finds it.
func (rr *respRun) final(text string) (responseObject, []byte) {
	obj := newResponseObject(rr.rq, rr.id, rr.s.cfg.Model, rr.created)
	obj.finish(rr.status, rr.msgID, text, rr.req.promptTokens, rr.total, rr.cached())
	body := mustMarshal(obj)
	if rr.rq.store {
		rr.s.responses.put(rr.id, newStoredResponse(body, rr.id, rr.rq, slices.Concat(rr.conv, rr.rq.texts, []string{text})))
	}
	return obj, body
}

func (rr *respRun) whole() {
	want := rr.total
	if rr.cutAt >= 0 {
		want = rr.cutAt
	}
	if _, err := rr.wait(want); err != nil {
		rr.s.failSeq(rr.w, err, false)
		return
	}
	if rr.cutAt >= 0 {
		rr.s.cutConn()
	}
	text := make([]byte, 0, rr.total*8)
	for range rr.total {
		text = append(text, rr.nextWord()...)
		text = append(text, ' ')
	}
	_, body := rr.final(string(text))
	rr.w.Header().Set("Content-Type", "application/json")
	rr.w.Write(body)
	rr.s.st.completed.Add(1)
}

// stream sends the Responses event sequence: created and in_progress at
// once, the item and part openers with the first token, one delta per
// token flushed as the engine produces it, then the closers and
// response.completed (or response.incomplete). There is no [DONE].
func (rr *respRun) stream() {
	h := rr.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	rr.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(rr.w)
	enc := newRespEventEncoder(rr.msgID)
	obj := newResponseObject(rr.rq, rr.id, rr.s.cfg.Model, rr.created)
	buf := make([]byte, 0, 4096)
	buf = enc.event(buf, "response.created", responseEvent{obj})
	buf = enc.event(buf, "response.in_progress", responseEvent{obj})
	if !rr.write(rc, buf) {
		return
	}
	text := make([]byte, 0, rr.total*8)
	sent := 0
	for sent < rr.total {
		if sent == rr.cutAt {
			rr.s.cutConn()
		}
		p, err := rr.wait(sent + 1)
		if err != nil {
			rr.s.failSeq(rr.w, err, true)
			return
		}
		if rr.cutAt >= 0 && p > rr.cutAt {
			p = rr.cutAt
		}
		buf = buf[:0]
		if sent == 0 {
			buf = enc.event(buf, "response.output_item.added", itemEvent{Item: newOutputMessage(rr.msgID, "in_progress", "", false)})
			buf = enc.event(buf, "response.content_part.added", partEvent{ItemID: rr.msgID, Part: newOutputText("")})
		}
		for ; sent < p; sent++ {
			start := len(text)
			text = append(text, rr.nextWord()...)
			text = append(text, ' ')
			buf = enc.delta(buf, text[start:])
		}
		if !rr.write(rc, buf) {
			return
		}
	}
	final, body := rr.final(string(text))
	buf = buf[:0]
	buf = enc.event(buf, "response.output_text.done", textDoneEvent{ItemID: rr.msgID, Text: final.Output[0].Content[0].Text, Logprobs: []struct{}{}})
	buf = enc.event(buf, "response.content_part.done", partEvent{ItemID: rr.msgID, Part: final.Output[0].Content[0]})
	buf = enc.event(buf, "response.output_item.done", itemEvent{Item: final.Output[0]})
	buf = enc.event(buf, "response."+rr.status, finalEvent{body})
	if rr.write(rc, buf) {
		rr.s.st.completed.Add(1)
	}
}

// write sends and flushes b (Server.send).
func (rr *respRun) write(rc *http.ResponseController, b []byte) bool { return rr.s.send(rr.w, rc, b) }
