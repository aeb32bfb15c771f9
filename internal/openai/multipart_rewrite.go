package openai

import (
	"bufio"
	"bytes"
	"mime"
	"net/textproto"
	"strings"
)

// ReplaceFormModel is ReplaceModel for an audio request's
// multipart/form-data body (contentType carries its boundary): body with
// the "model" part's content set to model, in a new buffer
// (ReplaceFormModelChunks without the splice).
func ReplaceFormModel(contentType string, body []byte, model string) ([]byte, error) {
	segs, err := ReplaceFormModelChunks(contentType, [][]byte{body}, model)
	if err != nil {
		return nil, err
	}
	return JoinChunks(segs), nil
}

// ReplaceFormModelChunks sets the "model" part's content of a form held
// as chunks (the gateway's body blocks) to model, every other byte
// (preamble, boundary lines, part headers, the file's bytes, the
// epilogue) kept as the client sent it. A form without a "model" part
// gets one, first. A quoted-printable model part gets the model
// quoted-printable encoded, so it decodes to model.
//
// The answer is a splice, not a copy: sub-slices of chunks before and
// after the model part's content, and the new content between them (a
// 25 MiB form rewritten per attempt would otherwise be a 25 MiB copy per
// attempt, outside the body budget). It shares chunks' memory: valid as
// long as they are.
//
// Re-encoding with multipart.Writer would rewrite every part's headers;
// instead the form is framed here exactly as mime/multipart's Reader
// frames it (ParseMultipartRequest's reader: the same boundary lines, the
// same rule for where a part's content ends, the part's name read by
// net/textproto and mime as Part.FormName reads it), so the part replaced
// is the part the gateway read. The work is one pass over the form up to
// the model part and one header parse per part before it.
//
// The form must have passed ParseMultipartRequest, so the only errors are
// a form the framing here reads otherwise, which should not happen, and a
// model whose bytes would end the part early (a line break, or the
// boundary at its start): a 400 naming "model".
func ReplaceFormModelChunks(contentType string, chunks [][]byte, model string) ([][]byte, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return nil, unrewritableForm()
	}
	f := formFrame{body: newChunkText(chunks), dash: "--" + params["boundary"]}
	first, pos, ok := f.firstPart()
	if !ok {
		return nil, unrewritableForm()
	}
	var hr headerReader
	for {
		cs, ok := f.headerEnd(pos)
		if !ok {
			return nil, unrewritableForm()
		}
		name, qp, ok := hr.read(f.body.slice(pos, cs))
		if !ok {
			return nil, unrewritableForm()
		}
		ce, bare, ok := f.contentEnd(cs)
		if !ok {
			return nil, unrewritableForm()
		}
		if name == "model" {
			return f.replace(cs, ce, bare, qp, model)
		}
		next, final, ok := f.nextPart(ce, bare)
		if !ok {
			return nil, unrewritableForm()
		}
		if final {
			return f.insert(first, model)
		}
		pos = next
	}
}

func unrewritableForm() *Error {
	e := BadRequest("invalid_multipart", "The gateway could not write the model into the multipart/form-data body of your request")
	e.Param = "model"
	return e
}

// formFrame is a whole multipart body framed as mime/multipart.Reader
// frames it, the reader's input known to end where body ends.
type formFrame struct {
	body chunkText
	dash string // "--" + boundary
	nl   string // the line break of the boundary lines: "\r\n", or "\n" when the first one ends so
}

// line is the line of body at pos with its '\n', or the rest of body.
func (f *formFrame) line(pos int) []byte {
	if i := f.body.indexByte(pos, '\n'); i >= 0 {
		return f.body.slice(pos, i+1)
	}
	return f.body.slice(pos, f.body.len())
}

// afterDash is what follows "--boundary" on a boundary line, linear
// white space skipped (skipLWSPChar), or nil when line is not one.
func (f *formFrame) afterDash(line []byte) ([]byte, bool) {
	if !bytes.HasPrefix(line, []byte(f.dash)) {
		return nil, false
	}
	return bytes.TrimLeft(line[len(f.dash):], " \t"), true
}

// isFinal is Reader.isFinalBoundary: "--boundary--", white space, then
// the line break or the body's end.
func (f *formFrame) isFinal(line []byte) bool {
	rest, ok := f.afterDash(line)
	if !ok || !bytes.HasPrefix(rest, []byte("--")) {
		return false
	}
	rest = bytes.TrimLeft(rest[2:], " \t")
	return len(rest) == 0 || string(rest) == f.nl
}

// firstPart skips the preamble to the first boundary line (the body's
// line break decided by it, as Reader does) and returns where that line
// starts and where the first part's headers start.
func (f *formFrame) firstPart() (first, headers int, ok bool) {
	f.nl = "\r\n"
	for pos := 0; pos < f.body.len(); {
		line := f.line(pos)
		if rest, ok := f.afterDash(line); ok {
			if string(rest) == "\n" {
				f.nl = "\n"
			}
			if string(rest) == f.nl {
				return pos, pos + len(line), true
			}
		}
		if f.isFinal(line) || line[len(line)-1] != '\n' {
			return 0, 0, false // no part
		}
		pos += len(line)
	}
	return 0, 0, false
}

// headerEnd is where the part's content starts: after the first empty
// line ("\r\n" or "\n", as textproto reads lines) from pos.
func (f *formFrame) headerEnd(pos int) (int, bool) {
	for pos < f.body.len() {
		line := f.line(pos)
		pos += len(line)
		if string(line) == "\r\n" || string(line) == "\n" {
			return pos, true
		}
		if line[len(line)-1] != '\n' {
			break
		}
	}
	return 0, false
}

// contentEnd is scanUntilBoundary over the rest of the body: the part's
// content ends where the line break before a boundary starts, the
// boundary followed by white space, a line break, "--", or the body's
// end; or, right at the content's start, at a boundary with no line
// break before it (bare: an empty part).
func (f *formFrame) contentEnd(cs int) (ce int, bare, ok bool) {
	search := cs
	if f.body.hasPrefixAt(cs, f.dash) {
		if f.endsBoundary(cs + len(f.dash)) {
			return cs, true, true
		}
		search = cs + len(f.dash)
	}
	nlDash := []byte(f.nl + f.dash)
	for {
		i := f.body.index(search, nlDash)
		if i < 0 {
			return 0, false, false
		}
		if f.endsBoundary(i + len(nlDash)) {
			return i, false, true
		}
		search = i + len(nlDash)
	}
}

// endsBoundary is matchAfterPrefix at the body's end: whether what
// follows a candidate boundary at pos makes it one.
func (f *formFrame) endsBoundary(pos int) bool {
	if pos == f.body.len() {
		return true
	}
	switch f.body.at(pos) {
	case ' ', '\t', '\r', '\n':
		return true
	case '-':
		return pos+1 < f.body.len() && f.body.at(pos+1) == '-'
	}
	return false
}

// nextPart reads the boundary line after a part's content (Reader.nextPart:
// the line break, then "--boundary" and a line break, or the final
// boundary) and returns where the next part's headers start.
func (f *formFrame) nextPart(ce int, bare bool) (next int, final, ok bool) {
	pos := ce
	if !bare {
		if line := f.line(pos); string(line) != f.nl {
			return 0, false, false
		}
		pos += len(f.nl)
	}
	line := f.line(pos)
	if rest, ok := f.afterDash(line); ok && string(rest) == f.nl {
		return pos + len(line), false, true
	}
	return 0, true, f.isFinal(line)
}

// replace returns the body with [cs, ce) replaced by model (a bare empty
// part's content gets the line break its boundary needs after it).
func (f *formFrame) replace(cs, ce int, bare, qp bool, model string) ([][]byte, error) {
	n := len(model)
	if qp {
		n = qpLen(model) // no line break; only its start can be a boundary
	} else if strings.ContainsAny(model, "\r\n") {
		return nil, unrewritableForm()
	}
	if strings.HasPrefix(model, f.dash) {
		return nil, unrewritableForm() // read as a boundary with no line break before it
	}
	if bare {
		n += len(f.nl)
	}
	mid := make([]byte, 0, n)
	if qp {
		mid = appendQP(mid, model)
	} else {
		mid = append(mid, model...)
	}
	if bare {
		mid = append(mid, f.nl...)
	}
	return f.splice(cs, ce, mid), nil
}

// splice is the body's chunks before at, mid, then the chunks from end.
func (f *formFrame) splice(at, end int, mid []byte) [][]byte {
	segs := f.body.segments(make([][]byte, 0, len(f.body.chunks)+2), 0, at)
	segs = append(segs, mid)
	return f.body.segments(segs, end, f.body.len())
}

// modelPartHeader is the header of a model part the gateway adds.
const modelPartHeader = `Content-Disposition: form-data; name="model"`

// insert returns the body with a model part added before the first
// boundary line (at first), in the body's line breaks.
func (f *formFrame) insert(first int, model string) ([][]byte, error) {
	if strings.ContainsAny(model, "\r\n") || strings.HasPrefix(model, f.dash) {
		return nil, unrewritableForm()
	}
	nl := f.nl
	mid := make([]byte, 0, len(f.dash)+len(modelPartHeader)+len(model)+4*len(nl))
	mid = append(append(mid, f.dash...), nl...)
	mid = append(append(mid, modelPartHeader...), nl...)
	mid = append(mid, nl...)
	mid = append(append(mid, model...), nl...)
	return f.splice(first, first, mid), nil
}

// headerReader parses part headers as Reader does (net/textproto), its
// readers reused across the parts of one form.
type headerReader struct {
	src bytes.Reader
	br  *bufio.Reader
}

// read returns a part's form name (Part.FormName: the Content-Disposition
// must be form-data) and whether its content is quoted-printable (which
// Reader.NextPart decodes).
func (h *headerReader) read(block []byte) (name string, qp, ok bool) {
	h.src.Reset(block)
	if h.br == nil {
		h.br = bufio.NewReader(&h.src)
	} else {
		h.br.Reset(&h.src)
	}
	hdr, err := textproto.NewReader(h.br).ReadMIMEHeader()
	if err != nil {
		return "", false, false
	}
	if d, params, err := mime.ParseMediaType(hdr.Get("Content-Disposition")); err == nil && d == "form-data" {
		name = params["name"]
	}
	return name, strings.EqualFold(hdr.Get("Content-Transfer-Encoding"), "quoted-printable"), true
}

// qpSafe: a byte quoted-printable carries as itself. Space is escaped too:
// a decoder drops white space at a line's end.
func qpSafe(c byte) bool { return c > ' ' && c <= '~' && c != '=' }

func qpLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if !qpSafe(s[i]) {
			n += 2
		}
	}
	return n
}

func appendQP(out []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		if c := s[i]; qpSafe(c) {
			out = append(out, c)
		} else {
			out = append(out, '=', hex[c>>4], hex[c&15])
		}
	}
	return out
}
