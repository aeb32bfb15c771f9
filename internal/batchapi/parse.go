package batchapi

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// Line error codes, in BatchLineError.Code and in the 400 a bad upload gets.
const (
	CodeInvalidJSON      = "invalid_json_line"
	CodeLineTooLong      = "line_too_long"
	CodeInvalidCustomID  = "invalid_custom_id"
	CodeDuplicateID      = "duplicate_custom_id"
	CodeInvalidMethod    = "invalid_method"
	CodeInvalidURL       = "invalid_url"
	CodeInvalidBody      = "invalid_body"
	CodeModelNotFound    = "model_not_found"
	CodeModelMismatch    = "model_mismatch"
	CodeTooManyRequests  = "too_many_requests_in_file"
	CodeEmptyFile        = "empty_file"
	defaultMaxLineBytes  = 8 << 20
	defaultMaxLineErrors = 100
)

// ParseOptions bounds and checks a batch input file. The zero value accepts
// any model and endpoint, lines up to 8 MiB and any number of requests.
type ParseOptions struct {
	// Endpoints are the URLs a line may name; empty means any. At batch
	// creation it is just the batch's endpoint.
	Endpoints []string
	// Models reports whether a model is served; nil accepts every model.
	Models func(name string) bool
	// MaxRequests caps the number of requests; 0 means no cap. Parsing
	// stops at the first line beyond it.
	MaxRequests int
	// MaxLineBytes caps one line (default 8 MiB: a chat request with
	// inline images is several MiB, far above bufio.Scanner's 64 KiB).
	MaxLineBytes int
	// MaxErrors caps the line errors collected (default 100); later bad
	// lines are still detected but not reported one by one.
	MaxErrors int
	// ValidateOnly checks every line but returns no requests: an upload
	// is validated in memory bounded by one line, not by the file.
	ValidateOnly bool
	// Memory, when not nil, is charged before the parser allocates: its
	// read buffer, the line buffer as it grows, and a line's decoded
	// copy while the line is checked; all of it is released when
	// parsing ends. An upload's validation so counts against
	// server.max_body_memory with the gateway's request bodies: a line
	// that does not fit ends parsing with ErrLineMemory, one that would
	// not fit even with nothing else held with a CodeLineTooLong error.
	Memory *netguard.Budget
}

// ErrLineMemory ends ParseBatchInput when a line does not fit in
// ParseOptions.Memory: the gateway holds as many bytes of request bodies
// as it may, and the upload is refused with 503 to be retried.
var ErrLineMemory = errors.New("batch input line does not fit in the request body memory budget")

// errLineBeyondMemory is a line that would not fit in ParseOptions.Memory
// even with nothing else held: refused on its line (400 line_too_long),
// not 503, which the client would retry forever.
var errLineBeyondMemory = errors.New("batch input line does not fit in the request body memory bound")

// minLineBuf is the line buffer's first size; it doubles from there.
const minLineBuf = 4 << 10

// inputLine is one line as decoded; fields are raw so that a wrong type is
// reported per field instead of as one opaque decoding error.
type inputLine struct {
	CustomID json.RawMessage `json:"custom_id"`
	Method   json.RawMessage `json:"method"`
	URL      json.RawMessage `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// ParseBatchInput reads a batch input file (JSONL: one request object per
// line) and validates every line. It returns the requests only when no line
// is invalid; otherwise the line errors in line order: at most o.MaxErrors
// of them, plus one without a line summarising the rest. err is only a read
// error of r, wrapped, or ErrLineMemory (o.Memory full for now). Blank lines, a trailing "\r" and a UTF-8 byte order
// mark at the start are tolerated; a file without any request yields one
// CodeEmptyFile error.
//
// The input is untrusted: memory is bounded by MaxLineBytes per line plus
// the accepted requests themselves, plus a fixed-size key per custom_id
// (idKey: the ids are not kept, however long they are).
func ParseBatchInput(r io.Reader, o ParseOptions) ([]jobs.BatchRequest, []jobs.BatchLineError, error) {
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = defaultMaxLineBytes
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = defaultMaxLineErrors
	}
	p := parser{o: o, seen: make(map[idKey]int)}
	readBuf := max(16, min(o.MaxLineBytes, 64<<10)) // bufio's minimum size is 16
	if !o.Memory.TryReserve(int64(readBuf)) {
		return nil, nil, ErrLineMemory
	}
	defer o.Memory.Release(int64(readBuf))
	br := bufio.NewReaderSize(r, readBuf)
	// A UTF-8 byte order mark before the first line (Windows editors save
	// one) carries no content: skipped, as Python's utf-8-sig reading does,
	// rather than refusing line 1 as not a JSON object.
	if b, err := br.Peek(len(utf8BOM)); err == nil && string(b) == utf8BOM {
		br.Discard(len(utf8BOM))
	}
	line := &lineBuf{mem: o.Memory, base: int64(readBuf)}
	defer line.free()
	for n := 1; ; n++ {
		tooLong, err := line.read(br, o.MaxLineBytes)
		if errors.Is(err, errLineBeyondMemory) {
			return nil, p.beyondMemory(n, readBuf), nil
		}
		if errors.Is(err, ErrLineMemory) {
			return nil, nil, err
		}
		if err != nil && err != io.EOF {
			return nil, nil, fmt.Errorf("reading batch input line %d: %w", n, err)
		}
		if tooLong {
			p.fail(jobs.BatchLineError{Code: CodeLineTooLong, Line: n,
				Message: "line is longer than " + strconv.Itoa(o.MaxLineBytes) + " bytes"})
		} else if len(bytes.TrimSpace(line.b)) > 0 {
			// Decoding copies the line's fields (json.RawMessage): up to
			// its length again while it is checked.
			if err := line.reserve(int64(len(line.b))); errors.Is(err, errLineBeyondMemory) {
				return nil, p.beyondMemory(n, readBuf), nil
			} else if err != nil {
				return nil, nil, err
			}
			stop := p.line(n, line.b)
			o.Memory.Release(int64(len(line.b)))
			if stop {
				return nil, p.errs, nil
			}
		}
		if err == io.EOF {
			break
		}
	}
	if p.count == 0 && len(p.errs) == 0 {
		p.fail(jobs.BatchLineError{Code: CodeEmptyFile, Message: "the file contains no requests"})
	}
	if len(p.errs) > 0 {
		if p.dropped > 0 {
			p.errs = append(p.errs, jobs.BatchLineError{Code: p.errs[0].Code,
				Message: strconv.Itoa(p.dropped) + " more invalid lines not listed"})
		}
		return nil, p.errs, nil
	}
	return p.reqs, nil, nil
}

const utf8BOM = "\xef\xbb\xbf"

// lineBuf holds the line being read; its capacity is reserved from mem
// (nil: unbounded) before it is allocated, and kept until free.
type lineBuf struct {
	b        []byte
	mem      *netguard.Budget
	reserved int64
	// base is what the parse holds besides the buffer (its read buffer).
	base int64
}

// reserve takes n more bytes from l.mem, held with the buffer: a refusal
// is errLineBeyondMemory when they would not fit even with nothing else
// held (retrying cannot help), ErrLineMemory otherwise.
func (l *lineBuf) reserve(n int64) error {
	if l.mem.TryReserve(n) {
		return nil
	}
	if l.base+l.reserved+n > l.mem.Limit() {
		return errLineBeyondMemory
	}
	return ErrLineMemory
}

// read reads the next line, without its "\n" and a trailing "\r", into
// l.b. A line longer than max bytes is consumed to its end and reported
// with tooLong (its content is dropped). err is io.EOF after the last
// line, ErrLineMemory when the line does not fit in l.mem.
func (l *lineBuf) read(br *bufio.Reader, max int) (tooLong bool, err error) {
	l.b = l.b[:0]
	for {
		frag, err := br.ReadSlice('\n')
		content := bytes.TrimSuffix(frag, []byte("\n"))
		if !tooLong {
			if len(l.b)+len(content) > max+1 { // +1: room for a "\r" trimmed below
				tooLong, l.b = true, l.b[:0]
			} else if gerr := l.append(content, max+1); gerr != nil {
				return false, gerr
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		l.b = bytes.TrimSuffix(l.b, []byte("\r"))
		if len(l.b) > max {
			tooLong, l.b = true, l.b[:0]
		}
		return tooLong, err
	}
}

// append adds p to the line, growing the buffer to at most limit bytes by
// doubling. The larger buffer is reserved before it is allocated and the
// smaller released only once copied: both are live during the copy.
func (l *lineBuf) append(p []byte, limit int) error {
	need := len(l.b) + len(p)
	if need > cap(l.b) {
		size := min(max(2*cap(l.b), need, minLineBuf), limit)
		if err := l.reserve(int64(size)); err != nil {
			return err
		}
		grown := make([]byte, len(l.b), size)
		copy(grown, l.b)
		l.mem.Release(int64(cap(l.b)))
		l.b, l.reserved = grown, int64(size)
	}
	l.b = append(l.b, p...)
	return nil
}

// free gives the buffer's reservation back.
func (l *lineBuf) free() {
	l.mem.Release(l.reserved)
	l.b, l.reserved = nil, 0
}

// beyondMemory ends parsing on line n, which cannot be checked within
// o.Memory's bound, with the line errors so far and this one. The figure
// named is the length that always fits: a line's buffer has a capacity
// under twice the line (doubling), held with the previous one while it
// grows or with the decoded copy: under three times the line in all.
func (p *parser) beyondMemory(n, readBuf int) []jobs.BatchLineError {
	fits := max(0, (p.o.Memory.Limit()-int64(readBuf))/3)
	p.fail(jobs.BatchLineError{Code: CodeLineTooLong, Line: n,
		Message: "line is longer than this gateway can check within its request memory bound; lines up to " +
			strconv.FormatInt(fits, 10) + " bytes always fit"})
	return p.errs
}

// idKey stands for a custom_id in the duplicate check: the first 16 bytes
// of its SHA-256. OpenAI documents no length limit for custom_id, so the
// ids themselves are not kept: a file of long ids (up to a line each)
// would otherwise hold its whole size in the set. The set costs about
// 40 bytes per request whatever the ids' length. Two distinct ids share a
// key with probability below n²/2¹²⁹: about 4e-30 for 50,000 requests;
// the only effect would be a false duplicate_custom_id on the upload.
type idKey [16]byte

func keyOf(id string) idKey {
	sum := sha256.Sum256([]byte(id))
	return idKey(sum[:16])
}

type parser struct {
	o       ParseOptions
	seen    map[idKey]int // custom_id's key -> line
	reqs    []jobs.BatchRequest
	errs    []jobs.BatchLineError
	count   int // valid or not, lines with content
	dropped int
	// model is the first valid line's model, on line modelLine: OpenAI
	// allows one model per batch input file ("each input file can only
	// include requests to a single model", Batch API guide).
	model     string
	modelLine int
}

// fail records a line error. From then on the requests are never
// returned, so their bodies are not held either.
func (p *parser) fail(e jobs.BatchLineError) {
	p.reqs = nil
	if len(p.errs) < p.o.MaxErrors {
		p.errs = append(p.errs, e)
		return
	}
	p.dropped++
}

// line validates one non-blank line; stop is true when parsing must end
// (too many requests).
func (p *parser) line(n int, raw []byte) (stop bool) {
	p.count++
	if p.o.MaxRequests > 0 && p.count > p.o.MaxRequests {
		p.fail(jobs.BatchLineError{Code: CodeTooManyRequests, Line: n,
			Message: "the file has more than " + strconv.Itoa(p.o.MaxRequests) + " requests"})
		return true
	}
	req, e := p.validate(raw)
	if e != nil {
		e.Line = n
		p.fail(*e)
		return false
	}
	key := keyOf(req.CustomID)
	if first, dup := p.seen[key]; dup {
		p.fail(jobs.BatchLineError{Code: CodeDuplicateID, Param: "custom_id", Line: n,
			Message: "custom_id " + strconv.Quote(openai.Echo(req.CustomID)) + " is already used on line " + strconv.Itoa(first)})
		return false
	}
	p.seen[key] = n
	if p.model == "" {
		p.model, p.modelLine = req.Model, n
	} else if req.Model != p.model {
		p.fail(jobs.BatchLineError{Code: CodeModelMismatch, Param: "body.model", Line: n,
			Message: "model " + strconv.Quote(openai.Echo(req.Model)) + " differs from " + strconv.Quote(openai.Echo(p.model)) +
				" on line " + strconv.Itoa(p.modelLine) + "; every request of a batch must use the same model"})
		return false
	}
	if len(p.errs) == 0 && !p.o.ValidateOnly {
		p.reqs = append(p.reqs, req)
	}
	return false
}

func (p *parser) validate(raw []byte) (jobs.BatchRequest, *jobs.BatchLineError) {
	bad := func(code, param, msg string) (jobs.BatchRequest, *jobs.BatchLineError) {
		return jobs.BatchRequest{}, &jobs.BatchLineError{Code: code, Param: param, Message: msg}
	}
	if !isObject(raw) {
		return bad(CodeInvalidJSON, "", "line is not a JSON object")
	}
	// JSON text is UTF-8 (RFC 8259 section 8.1). encoding/json would
	// read a stray byte as U+FFFD: the custom_id echoed in the output
	// would not be the one sent, and the body would reach the backend
	// with bytes no JSON parser need accept.
	if !utf8.Valid(raw) {
		return bad(CodeInvalidJSON, "", "line is not valid UTF-8 (byte "+strconv.Itoa(invalidUTF8At(raw))+")")
	}
	var in inputLine
	if err := json.Unmarshal(raw, &in); err != nil {
		return bad(CodeInvalidJSON, "", "line is not valid JSON: "+jsonProblem(err))
	}
	// encoding/json matched the line's keys case-insensitively; a line
	// that spells one twice is ambiguous, not "the last one wins".
	if err := openai.CheckKeys(bytes.TrimLeft(raw, " \t\r\n"), "custom_id", "method", "url", "body"); err != nil {
		var oe *openai.Error
		errors.As(err, &oe)
		return bad(CodeInvalidJSON, oe.Param, "line: "+oe.Message)
	}
	customID, ok := jsonString(in.CustomID)
	if !ok || customID == "" {
		return bad(CodeInvalidCustomID, "custom_id", "custom_id must be a non-empty string")
	}
	if method, ok := jsonString(in.Method); !ok || method != "POST" {
		return bad(CodeInvalidMethod, "method", `method must be "POST"`)
	}
	url, ok := jsonString(in.URL)
	if !ok || url == "" {
		return bad(CodeInvalidURL, "url", "url must be a string naming the endpoint, e.g. \"/v1/chat/completions\"")
	}
	if len(p.o.Endpoints) > 0 && !slices.Contains(p.o.Endpoints, url) {
		return bad(CodeInvalidURL, "url", "url "+strconv.Quote(openai.Echo(url))+" is not supported here; use one of "+quoteAll(p.o.Endpoints))
	}
	if !isObject(in.Body) {
		return bad(CodeInvalidBody, "body", "body must be a JSON object")
	}
	// The body is read as the gateway will read it when the job runs (and
	// as the backend will): strictly, so an ambiguous body is refused now,
	// on its line, rather than failing later.
	peek, err := parseBody(url, in.Body)
	if err != nil {
		param, msg := "body", "body is not a valid request"
		var oe *openai.Error
		if errors.As(err, &oe) {
			msg = "body: " + oe.Message
			if oe.Param != "" {
				param = "body." + oe.Param
			}
		}
		return bad(CodeInvalidBody, param, msg)
	}
	model := peek.Model
	if model == "" {
		return bad(CodeInvalidBody, "body.model", "body.model must be a non-empty string")
	}
	// A batch answer is stored whole: a streamed one would be kept as a
	// completion without its usage. OpenAI refuses such lines too.
	if peek.Stream {
		return bad(CodeInvalidBody, "body.stream", "body.stream: a batch request cannot be streamed; remove stream or set it to false")
	}
	if p.o.Models != nil && !p.o.Models(model) {
		return bad(CodeModelNotFound, "body.model", "model "+strconv.Quote(openai.Echo(model))+" is not served by this gateway")
	}
	return jobs.BatchRequest{
		CustomID: customID,
		Method:   "POST",
		URL:      url,
		Model:    model,
		Body:     in.Body, // a copy: RawMessage's UnmarshalJSON never aliases the line buffer
	}, nil
}

// isObject reports whether raw, trimmed, starts like a JSON object; with a
// successful Unmarshal this means it is one (null and other values decode
// into a struct without error).
func isObject(raw []byte) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// invalidUTF8At is the offset of the first byte of raw that does not
// start a valid UTF-8 sequence (len(raw) when there is none).
func invalidUTF8At(raw []byte) int {
	for i := 0; i < len(raw); {
		r, n := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(raw)
}

// jsonString decodes raw as a JSON string; ok is false for absent, null and
// any other type.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonProblem shortens a decoding error for a line error message.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return syn.Error() + " at byte " + strconv.FormatInt(syn.Offset, 10)
	}
	return "not a JSON object" // other decoder errors name Go types
}

func quoteAll(ss []string) string {
	var b []byte
	for i, s := range ss {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendQuote(b, s)
	}
	return string(b)
}

// parseBody reads a line's body as the gateway will when the job runs:
// a Responses API body by its own rules, where background: true is
// refused (the gateway refuses it: it would run outside admission).
func parseBody(url string, body []byte) (openai.Peek, error) {
	if url != "/v1/responses" {
		return openai.ParseRequest(body)
	}
	peek, rp, err := openai.ParseResponsesRequest(body)
	if err == nil && rp.Background {
		e := openai.BadRequest("unsupported_parameter", "background responses are not supported")
		e.Param = "background"
		return peek, e
	}
	return peek, err
}
