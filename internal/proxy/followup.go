package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sluice-gw/sluice/internal/endpoint"
)

// FollowUp is a request about a stored response (Responses API: GET or
// DELETE /v1/responses/{id}, its input_items, its cancel), which only the
// backend that made the response can answer. It is a cheap read of the
// backend's memory, not inference: it takes no slot, its outcome says
// nothing of the backend's health, and its answer passes as it comes.
type FollowUp struct {
	Method, Path, RawQuery string
	Header                 http.Header // the client's; upstreamHeader filters it
	Body                   []byte      // nil: none
	RequestID              string
	ForwardedFor           string
}

// FollowUpResult says how a follow-up ended.
type FollowUpResult struct {
	Backend *endpoint.Backend // the backend whose answer was relayed, or last asked
	Status  int               // the status relayed; 0: none (Err says why)
	Asked   int               // backends asked
	// NotFound: every backend asked answered 404 (Ask with probe): none
	// holds the response, and nothing was relayed.
	NotFound bool
	Err      error // nothing relayed (a transport error), or the relay broke
}

// Ask sends the follow-up to backends in order and relays the first
// answer that counts: with probe, a 404 (the backend does not hold the
// response) is drained and the next backend asked, and a backend that
// cannot be reached is skipped; without, the first backend's answer is
// relayed whatever it is. Each backend's head must come within
// Timeouts.FirstByte, the whole within Timeouts.Total. A redirect is
// never relayed (it would send the client, and its key, wherever the
// backend points, as relay's reasoning for inference goes): it is
// ErrBadAnswer, and a probe asks the next backend.
func (f *Forwarder) Ask(ctx context.Context, w http.ResponseWriter, in *FollowUp, backends []*endpoint.Backend, probe bool) (res FollowUpResult) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	total := f.opt.AfterFunc(f.opt.Timeouts.Total, func() { cancel(ErrTotalTimeout) })
	defer total.Stop()
	for _, b := range backends {
		res.Backend = b
		res.Asked++
		actx, acancel := context.WithCancelCause(ctx)
		head := f.opt.AfterFunc(f.opt.Timeouts.FirstByte, func() { acancel(ErrFirstByteTimeout) })
		resp, err := f.opt.Transport.RoundTrip(f.followUpRequest(actx, b, in))
		head.Stop()
		if err != nil {
			res.Err = classifyTransportError(err, context.Cause(actx))
			acancel(nil)
			if probe && ctx.Err() == nil {
				continue
			}
			return res
		}
		if resp.StatusCode/100 == 3 {
			drain(resp.Body)
			acancel(nil)
			res.Err = fmt.Errorf("%w: a %d redirect", ErrBadAnswer, resp.StatusCode)
			if probe && ctx.Err() == nil {
				continue
			}
			return res
		}
		if probe && resp.StatusCode == http.StatusNotFound {
			drain(resp.Body)
			acancel(nil)
			res.NotFound = res.Err == nil
			continue
		}
		res.NotFound, res.Err = false, nil
		res.Status = resp.StatusCode
		res.Err = f.relayFollowUp(w, b, resp, in)
		acancel(nil)
		return res
	}
	return res
}

// followUpRequest is the follow-up as sent to b: its method, path and
// query, the headers an inference request would carry (upstreamHeader:
// the backend's credentials, not the client's).
func (f *Forwarder) followUpRequest(ctx context.Context, b *endpoint.Backend, in *FollowUp) *http.Request {
	t := b.Target()
	u := &url.URL{Scheme: t.Scheme, Host: t.Host, Path: t.Path + in.Path, RawQuery: in.RawQuery}
	h := upstreamHeader(&Request{Header: in.Header, RequestID: in.RequestID, ForwardedFor: in.ForwardedFor}, b.Spec())
	req := &http.Request{Method: in.Method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, Host: t.Host, Body: http.NoBody}
	if len(in.Body) > 0 {
		body := in.Body
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return req.WithContext(ctx)
}

// relayFollowUp passes the answer on as it comes, an event stream
// (GET ?stream=true of a background response) flushed after every read.
func (f *Forwarder) relayFollowUp(w http.ResponseWriter, b *endpoint.Backend, resp *http.Response, in *FollowUp) error {
	defer resp.Body.Close()
	f.writeHead(w, b, resp, &Request{RequestID: in.RequestID})
	stream := strings.HasPrefix(headerGet(resp.Header, "Content-Type"), "text/event-stream")
	flusher, _ := w.(http.Flusher)
	bufp := relayBufPool.Get().(*[]byte)
	defer relayBufPool.Put(bufp)
	for {
		n, err := resp.Body.Read(*bufp)
		if n > 0 {
			if _, werr := w.Write((*bufp)[:n]); werr != nil {
				return context.Canceled
			}
			if stream && flusher != nil {
				flusher.Flush()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errors.Join(ErrUpstream, err)
		}
	}
}
