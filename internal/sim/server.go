package sim

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxBodyBytes bounds a request body; large enough for very long prompts.
const maxBodyBytes = 64 << 20

// Server is one simulated inference server. It is an http.Handler; create it
// with New and release it with Close. Safe for concurrent use.
type Server struct {
	cfg       Config
	modelJSON []byte // JSON-quoted model id, spliced into hand-built SSE chunks
	mux       *http.ServeMux
	eng       *engine // nil in Instant mode
	instant   *instantBodies
	now       func() time.Time
	responses *respStore // finished /v1/responses answers kept for GET and previous_response_id
	idNonce   string     // random per server, so two simulators never mint the same response id

	faults  atomic.Pointer[Faults]
	arrival atomic.Uint64 // request arrival number: drives fault draws and ids
	st      counters
	bufs    sync.Pool // *bytes.Buffer for request bodies

	quit      chan struct{}
	closeOnce sync.Once
}

// counters are written with atomics by handlers and the engine goroutine.
type counters struct {
	requests, completed, rejected, cancelled, errors, disconnected atomic.Int64
	running, waiting, kvUsed                                       atomic.Int64
	promptTokens, generatedTokens, prefixHits, prefixQueries       atomic.Int64
}

// Stats is a snapshot of the server's counters, for tests and /metrics.
type Stats struct {
	Requests          int64   // inference requests received (chat, completions, responses, embeddings, pooling, tokenizer), rejected ones included
	Completed         int64   // requests answered in full
	Rejected503       int64   // turned away because the waiting queue was full
	Cancelled         int64   // the client went away before the answer was complete
	Errors            int64   // injected 500s, and requests failed by Close
	Disconnected      int64   // connections cut by the DisconnectRate fault
	Running           int     // sequences in the batch (prefilling or decoding)
	Waiting           int     // sequences in the waiting queue
	PrefixHitTokens   int64   // prompt tokens served from the prefix cache
	PrefixQueryTokens int64   // prompt tokens looked up in the prefix cache
	PromptTokens      int64   // prompt tokens admitted to the batch
	GeneratedTokens   int64   // output tokens produced by decode steps
	KVUsage           float64 // (prompt+generated tokens of running sequences) / KVTokens, 0..1
}

// New builds a server from cfg (zero fields take their defaults) and, unless
// cfg.Instant, starts its engine goroutine, which runs until Close.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	modelJSON, _ := json.Marshal(cfg.Model) // a string always marshals
	var nonce [6]byte
	rand.Read(nonce[:]) // never fails (crypto/rand panics rather than return an error)
	s := &Server{
		cfg:       cfg,
		modelJSON: modelJSON,
		now:       time.Now,
		responses: newRespStore(),
		idNonce:   hex.EncodeToString(nonce[:]),
		quit:      make(chan struct{}),
		bufs:      sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
	f := cfg.Faults
	s.faults.Store(&f)
	s.routes()
	if cfg.Instant {
		s.instant = newInstantBodies(cfg, modelJSON, s.now())
	} else {
		s.eng = newEngine(cfg, &s.st, s.quit)
		go s.eng.run()
	}
	return s
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /v1/chat/completions", s.handleCompletion(kindChat))
	m.HandleFunc("POST /v1/completions", s.handleCompletion(kindCompletion))
	m.HandleFunc("POST /v1/embeddings", s.handleEmbeddings)
	for path, kind := range map[string]poolKind{
		"/v1/rerank": poolRerank, "/rerank": poolRerank, "/v2/rerank": poolRerank,
		"/v1/score": poolScore, "/score": poolScore, "/classify": poolClassify, "/pooling": poolPooling,
		"/v1/moderations": poolModerations, "/tokenize": poolTokenize, "/detokenize": poolDetokenize,
	} {
		m.HandleFunc("POST "+path, s.handlePool(kind))
	}
	m.HandleFunc("POST /v1/audio/transcriptions", s.handleAudio)
	m.HandleFunc("POST /v1/audio/translations", s.handleAudio)
	m.HandleFunc("POST /v1/responses", s.handleResponses)
	m.HandleFunc("GET /v1/responses/{id}", s.handleGetResponse)
	m.HandleFunc("DELETE /v1/responses/{id}", s.handleDeleteResponse)
	m.HandleFunc("GET /v1/responses/{id}/input_items", s.handleInputItems)
	m.HandleFunc("POST /v1/responses/{id}/cancel", s.handleCancelResponse)
	m.HandleFunc("GET /v1/models", s.handleModels)
	m.HandleFunc("GET /health", s.handleHealth)
	m.HandleFunc("GET /metrics", s.handleMetrics)
	m.HandleFunc("GET /sim/faults", s.handleGetFaults)
	m.HandleFunc("POST /sim/faults", s.handleSetFaults)
	s.mux = m
}

// ServeHTTP serves the OpenAI API, /health, /metrics and /sim/faults.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops the engine goroutine and waits for it. Waiting and running
// requests fail at once: non-streaming ones get a 503, streams are cut.
// Later requests get 503. Close is idempotent. It does not wait for handlers
// to return; an http.Server's Shutdown does that.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.quit)
		if s.eng != nil {
			<-s.eng.exited
		}
	})
}

// SetFaults replaces the fault settings for requests that arrive from now on.
func (s *Server) SetFaults(f Faults) {
	f = f.normalized()
	s.faults.Store(&f)
}

// Faults returns the fault settings in force.
func (s *Server) Faults() Faults { return *s.faults.Load() }

// Config returns the configuration in force, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Stats returns a snapshot of the counters. Fields are read one by one, so
// a snapshot taken under load is only approximately consistent.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:          s.st.requests.Load(),
		Completed:         s.st.completed.Load(),
		Rejected503:       s.st.rejected.Load(),
		Cancelled:         s.st.cancelled.Load(),
		Errors:            s.st.errors.Load(),
		Disconnected:      s.st.disconnected.Load(),
		Running:           int(s.st.running.Load()),
		Waiting:           int(s.st.waiting.Load()),
		PrefixHitTokens:   s.st.prefixHits.Load(),
		PrefixQueryTokens: s.st.prefixQueries.Load(),
		PromptTokens:      s.st.promptTokens.Load(),
		GeneratedTokens:   s.st.generatedTokens.Load(),
		KVUsage:           float64(s.st.kvUsed.Load()) / float64(s.cfg.KVTokens),
	}
}

func (s *Server) closed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}

// readBody reads the request body into a pooled buffer; the caller must
// hand the buffer back with putBuf once the body is parsed.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (*bytes.Buffer, error) {
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBodyBytes)); err != nil {
		s.putBuf(buf)
		return nil, fmt.Errorf("%w: reading body: %w", errBadRequest, err)
	}
	return buf, nil
}

// readParsed is every handler's first stage: the request counted, its
// body read (readBody) and parsed by parse, the buffer given back (parse
// keeps nothing of it). n is the request's arrival number (applyFaults);
// ok is false once an error is answered.
func readParsed[T any](s *Server, w http.ResponseWriter, r *http.Request, parse func([]byte) (T, error)) (req T, n uint64, ok bool) {
	s.st.requests.Add(1)
	n = s.arrival.Add(1)
	buf, err := s.readBody(w, r)
	if err != nil {
		writeRequestError(w, err)
		return req, n, false
	}
	req, err = parse(buf.Bytes())
	s.putBuf(buf)
	if err != nil {
		writeRequestError(w, err)
		return req, n, false
	}
	return req, n, true
}

// servesModel answers 404 model_not_found for a request naming another
// model than the one served ("" names none: served).
func (s *Server) servesModel(w http.ResponseWriter, model string) bool {
	if model != "" && model != s.cfg.Model {
		writeModelNotFound(w, model)
		return false
	}
	return true
}

func (s *Server) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 { // don't let one huge prompt pin memory in the pool
		s.bufs.Put(b)
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.closed() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "closed")
		return
	}
	io.WriteString(w, "ok")
}

func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	type model struct {
		ID          string `json:"id"`
		Object      string `json:"object"`
		Created     int64  `json:"created"`
		OwnedBy     string `json:"owned_by"`
		MaxModelLen int    `json:"max_model_len"`
	}
	writeJSON(w, http.StatusOK, struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{"list", []model{{s.cfg.Model, "model", 0, "sluice-sim", s.cfg.KVTokens}}})
}

// writeJSON writes v as the whole response. Marshal errors cannot happen for
// the plain structs used here, so a failure is reported as a 500.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "internal_error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// writeRequestError maps an error from reading or parsing a request to a response.
func writeRequestError(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	var re *requestError
	switch {
	case errors.As(err, &mbe):
		writeErrorParam(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", "",
			"the request body exceeds "+strconv.FormatInt(mbe.Limit, 10)+" bytes")
	case errors.As(err, &re):
		writeErrorParam(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", re.param, re.msg)
	default:
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_request", "could not read the request body")
	}
}
