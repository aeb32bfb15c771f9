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
// the "model" part's content set to model, every other byte (preamble,
// boundary lines, part headers, the file's bytes, the epilogue) kept as
// the client sent it. A form without a "model" part gets one, first. A
// quoted-printable model part gets the model quoted-printable encoded, so
// it decodes to model.
//
// Re-encoding with multipart.Writer would rewrite every part's headers;
// instead the form is framed here exactly as mime/multipart's Reader
// frames it (ParseMultipartRequest's reader: the same boundary lines, the
// same rule for where a part's content ends, the part's name read by
// net/textproto and mime as Part.FormName reads it), so the part replaced
// is the part the gateway read. The work is one pass over the form up to
// the model part, one header parse per part before it, and one output
// allocation of the output's size.
//
// body must have passed ParseMultipartRequest, so the only errors are a
// form the framing here reads otherwise, which should not happen, and a
// model whose bytes would end the part early (a line break, or the
// boundary at its start): a 400 naming "model".
func ReplaceFormModel(contentType string, body []byte, model string) ([]byte, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return nil, unrewritableForm()
	}
	f := formFrame{body: body, dash: "--" + params["boundary"]}
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
		name, qp, ok := hr.read(body[pos:cs])
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
	body []byte
	dash string // "--" + boundary
	nl   string // the line break of the boundary lines: "\r\n", or "\n" when the first one ends so
}

// line is the line of body at pos with its '\n', or the rest of body.
func (f *formFrame) line(pos int) []byte {
	if i := bytes.IndexByte(f.body[pos:], '\n'); i >= 0 {
		return f.body[pos : pos+i+1]
	}
	return f.body[pos:]
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
	for pos := 0; pos < len(f.body); {
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
	for pos < len(f.body) {
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
	if bytes.HasPrefix(f.body[cs:], []byte(f.dash)) {
		if f.endsBoundary(cs + len(f.dash)) {
			return cs, true, true
		}
		search = cs + len(f.dash)
	}
	nlDash := []byte(f.nl + f.dash)
	for {
		i := bytes.Index(f.body[search:], nlDash)
		if i < 0 {
			return 0, false, false
		}
		if i += search; f.endsBoundary(i + len(nlDash)) {
			return i, false, true
		}
		search = i + len(nlDash)
	}
}

// endsBoundary is matchAfterPrefix at the body's end: whether what
// follows a candidate boundary at pos makes it one.
func (f *formFrame) endsBoundary(pos int) bool {
	if pos == len(f.body) {
		return true
	}
	switch f.body[pos] {
	case ' ', '\t', '\r', '\n':
		return true
	case '-':
		return pos+1 < len(f.body) && f.body[pos+1] == '-'
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
func (f *formFrame) replace(cs, ce int, bare, qp bool, model string) ([]byte, error) {
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
	out := make([]byte, 0, len(f.body)-(ce-cs)+n)
	out = append(out, f.body[:cs]...)
	if qp {
		out = appendQP(out, model)
	} else {
		out = append(out, model...)
	}
	if bare {
		out = append(out, f.nl...)
	}
	return append(out, f.body[ce:]...), nil
}

// modelPartHeader is the header of a model part the gateway adds.
const modelPartHeader = `Content-Disposition: form-data; name="model"`

// insert returns the body with a model part added before the first
// boundary line (at first), in the body's line breaks.
func (f *formFrame) insert(first int, model string) ([]byte, error) {
	if strings.ContainsAny(model, "\r\n") || strings.HasPrefix(model, f.dash) {
		return nil, unrewritableForm()
	}
	nl := f.nl
	out := make([]byte, 0, len(f.body)+len(f.dash)+len(modelPartHeader)+len(model)+4*len(nl))
	out = append(out, f.body[:first]...)
	out = append(append(out, f.dash...), nl...)
	out = append(append(out, modelPartHeader...), nl...)
	out = append(out, nl...)
	out = append(append(out, model...), nl...)
	return append(out, f.body[first:]...), nil
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
