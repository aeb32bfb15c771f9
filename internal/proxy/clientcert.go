package proxy

import (
	"context"
	"crypto/tls"
	"net/http"
	"sync"
	"sync/atomic"
)

// In TLS 1.3 the client's handshake is over before the server has seen
// the client's certificate: a backend that requires one the gateway has
// not got sends its "certificate required" alert after the handshake, and
// closes. The request then sees the alert on its first read (a TLS
// failure, tlsFailure), or, when the backend has already closed, a broken
// pipe or reset on its first write, or HTTP/2's "client conn could not be
// established": failures that name no TLS. What the client does know is
// that the backend asked (a CertificateRequest) and it sent nothing: the
// transport's tls.Config records that on the request's context
// (noClientCertificate), and the Router names a failure of such a
// request, or of a request to a backend that asked and has answered
// nothing since, for what it is (certAskedError, a TLS failure: ErrTLS).

// certAskedKey is the context key of a request's *certAsk.
type certAskedKey struct{}

// certAsk is what an https request carries for noClientCertificate: its
// backend's host:port, a flag set when a handshake dialled for it was
// asked for a client certificate the gateway has none of, and the
// transports' memory of the hosts that asked (certAsked), which requests
// that did not dial (an HTTP/2 connection another request or a probe
// dialled, a waiter on its set-up) go by.
type certAsk struct {
	host  string
	asked atomic.Bool
	memo  *sync.Map
}

// noClientCertificate is the GetClientCertificate of a transport without
// a client certificate: it sends none, as Go does without the callback,
// and records that it was asked (certAsk) through the dialling request's
// context (net/http hands the handshake a context that keeps the
// request's values).
func noClientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if a, ok := cri.Context().Value(certAskedKey{}).(*certAsk); ok {
		a.asked.Store(true)
		a.memo.Store(a.host, struct{}{})
	}
	return &tls.Certificate{}, nil
}

// clientTLS is the tls.Config of a transport: base's (nil: Go's defaults)
// with noClientCertificate where base has no client certificate.
func clientTLS(base *tls.Config) *tls.Config {
	cfg := &tls.Config{}
	if base != nil {
		cfg = base.Clone()
	}
	if len(cfg.Certificates) == 0 && cfg.GetClientCertificate == nil {
		cfg.GetClientCertificate = noClientCertificate
	}
	return cfg
}

// certAskedError is a request's failure on a connection whose backend
// asked for a client certificate the gateway sent none of: its refusal
// (TLS 1.3) whatever the error reads. A TLS failure (tlsFailure).
type certAskedError struct{ err error }

func (e *certAskedError) Error() string {
	return "the backend asked for a client certificate and none is configured (tls.cert_file): " + e.err.Error()
}

func (e *certAskedError) Unwrap() error { return e.err }

// roundTripTLS is tr.RoundTrip of an https request, its failure named a
// certAskedError when its backend asked for a client certificate: on the
// connection dialled for it, or on the last one dialled to that host:port
// before the backend answered anything (memo: an answer clears the host).
func roundTripTLS(tr http.RoundTripper, req *http.Request, memo *sync.Map) (*http.Response, error) {
	a := &certAsk{host: req.URL.Host, memo: memo}
	resp, err := tr.RoundTrip(req.WithContext(context.WithValue(req.Context(), certAskedKey{}, a)))
	if err == nil {
		memo.Delete(a.host) // it answered: whatever it asked, it accepts what it got
		return resp, nil
	}
	if _, known := memo.Load(a.host); known || a.asked.Load() {
		err = &certAskedError{err: err}
	}
	return resp, err
}
