package openai

import (
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
)

// The audio endpoints (EndpointTranscriptions, EndpointTranslations) take
// multipart/form-data: a "file" part with the audio and form fields, of
// which the gateway reads "model" (to route), "stream" and
// "response_format" (what the answer will be), and the file's size (the
// admission estimate). The body has been read whole already, within
// max_audio_body_bytes (25 MiB by default, larger than JSON's
// max_body_bytes: OpenAI takes files up to 25 MB, and a form is scanned
// here, never parsed as JSON), so the scan's memory is bounded by the
// bytes received: a part's content is skipped as it is read, never
// copied, and a field's value is read up to maxFieldBytes.

// maxFieldBytes bounds a form field's value the gateway reads: a model
// name, a boolean, a format.
const maxFieldBytes = 1024

// AudioPeek is what the gateway reads of an audio request beyond Peek.
type AudioPeek struct {
	// FileBytes is the size of the "file" part's content.
	FileBytes int
	// Verbose: response_format is verbose_json (segments, language,
	// duration: more than a stream's text deltas carry).
	Verbose bool
}

// audioActedOn are the form fields the gateway reads, refused twice or in
// another case as actedOn are.
var audioActedOn = [...]string{"model", "file", "stream", "response_format"}

// ParseMultipartRequest reads an audio request: contentType is the
// request's Content-Type (multipart/form-data with its boundary), body
// the whole body. It returns the model (Peek.Model, "" when absent) and
// the file's size; every error is an *Error (400) naming the field.
//
// "stream" true (Peek.Stream) asks for an event stream: OpenAI's
// gpt-4o-transcribe models send transcript.text.delta events and a final
// transcript.text.done, vLLM transcription.chunk or
// translation.chunk events and [DONE]; the gateway relays either as it
// relays a chat stream. Its answer is events whatever the format, so
// "response_format" may then be json or text, the two vLLM streams
// (verbose_json is refused there, and OpenAI's streaming models take
// json alone). Without "stream" the gateway relays JSON answers only:
// "response_format" must be json or verbose_json (or absent).
// A boolean is "true"/"True"/"1" or "false"/"False"/"0" (or empty).
func ParseMultipartRequest(contentType string, body []byte) (p Peek, a AudioPeek, err error) {
	return ParseMultipartChunks(contentType, [][]byte{body})
}

// ParseMultipartChunks is ParseMultipartRequest for a form held as chunks
// (the gateway's body blocks), read in place.
func ParseMultipartChunks(contentType string, chunks [][]byte) (p Peek, a AudioPeek, err error) {
	mt, params, perr := mime.ParseMediaType(contentType)
	if perr != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return p, a, NotMultipart("")
	}
	body := newChunkText(chunks)
	mr := multipart.NewReader(NewChunkReader(body.chunks), params["boundary"])
	var seen uint8
	var format string // response_format, judged at the end (audioFormat)
	for {
		part, nerr := mr.NextPart()
		if nerr == io.EOF && closed(&body, params["boundary"]) {
			break
		}
		if nerr != nil {
			return p, a, BadMultipart()
		}
		name := part.FormName()
		idx := -1
		for i, f := range audioActedOn {
			if name == f {
				idx = i
			} else if strings.EqualFold(name, f) {
				return p, a, ambiguousKey(name, f)
			}
		}
		if idx < 0 {
			if _, err := io.Copy(io.Discard, part); err != nil {
				return p, a, BadMultipart()
			}
			continue
		}
		if seen&(1<<idx) != 0 {
			return p, a, duplicateKey(name)
		}
		seen |= 1 << idx
		if name == "file" {
			n, err := io.Copy(io.Discard, part)
			if err != nil {
				return p, a, BadMultipart()
			}
			a.FileBytes = int(n)
			continue
		}
		v, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
		if err != nil {
			return p, a, BadMultipart()
		}
		if len(v) > maxFieldBytes {
			e := BadRequest("invalid_value", name+" is longer than "+strconv.Itoa(maxFieldBytes)+" bytes")
			e.Param = name
			return p, a, e
		}
		switch name {
		case "model":
			p.Model = string(v)
		case "stream":
			switch string(v) {
			case "true", "True", "1":
				p.Stream = true
			case "false", "False", "0", "":
			default:
				return p, a, typeError("stream", "a boolean")
			}
		case "response_format":
			format = string(v)
		}
	}
	if seen&(1<<1) == 0 {
		return p, a, missingParam("file", "file is required")
	}
	// The fields come in any order: the format is judged once the stream
	// flag is known.
	a.Verbose = format == "verbose_json"
	return p, a, audioFormat(format, p.Stream)
}

// audioFormat checks an audio request's response_format ("" when absent)
// against what the gateway relays: JSON answers, or, for a stream, the
// formats a backend streams.
func audioFormat(format string, stream bool) error {
	switch {
	case format == "" || format == "json":
		return nil
	case stream && format == "text":
		return nil
	case stream:
		e := BadRequest("unsupported_value", "a streamed transcription's response_format must be json or text: the backends stream no other")
		e.Param = "response_format"
		return e
	case format == "verbose_json":
		return nil
	}
	e := BadRequest("unsupported_value", "response_format must be json or verbose_json through the gateway, which relays JSON answers only (or json or text with stream=true)")
	e.Param = "response_format"
	return e
}

// closed reports whether body holds its close delimiter ("--boundary--"
// at a line's start). NextPart's io.EOF does not tell: it is also what a
// body cut inside a part's head gives (textproto's bare io.EOF), and a
// body cut between parts gives an error wrapping io.EOF; either form,
// taken as ended, would be sent on for the backend to make sense of.
// A part's content cannot hold the delimiter (it would end the part), so
// finding it means the reader reached it.
func closed(body *chunkText, boundary string) bool {
	end := "--" + boundary + "--"
	return body.hasPrefixAt(0, end) || body.index(0, []byte("\n"+end)) >= 0
}

// BadMultipart is the 400 of a multipart/form-data body that does not
// parse (a wrong or missing boundary, a cut part): the same on every
// route that takes a form (audio, file uploads); the reader's own text is
// Go's and is never shown.
func BadMultipart() *Error {
	return BadRequest("invalid_multipart", "We could not parse the multipart/form-data body of your request")
}

// NotMultipart is the 400 of a body on a form route whose Content-Type is
// not multipart/form-data with a boundary, naming the header; fields, if
// not "", says which form fields the route wants.
func NotMultipart(fields string) *Error {
	msg := "the request must be multipart/form-data with a boundary"
	if fields != "" {
		msg += ", with the fields " + fields
	}
	e := BadRequest("invalid_content_type", msg)
	e.Param = "Content-Type"
	return e
}
