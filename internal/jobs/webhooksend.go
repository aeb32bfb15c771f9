package jobs

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/proxy"
)

// webhookSender makes one delivery attempt of a signed webhook. It is the
// only webhook client: the gateway's workers and `sluice worker` both
// deliver through their Store's sender.
//
// Every delivery carries the Standard Webhooks headers
// (https://www.standardwebhooks.com):
//
//	webhook-id:        the job id (the same on every attempt: dedupe on it)
//	webhook-timestamp: unix seconds of this attempt
//	webhook-signature: v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>
//
// where key is the secret's bytes, or for a secret written "whsec_<base64>"
// the decoded base64 (the Standard Webhooks secret format), and
// X-Sluice-Signature: t=<timestamp>,v1=<hex HMAC-SHA256(key, timestamp + "." + body)>
// for receivers written against earlier versions.
type webhookSender struct {
	client *http.Client
	key    []byte
	now    Clock
}

// webhookAttemptTimeout bounds one attempt: connect, send, and the answer.
const webhookAttemptTimeout = 10 * time.Second

// webhookMaxIdleConns bounds the idle connections kept for reuse, all
// destinations together. Destinations are the clients' choice: without a
// bound (http.Transport's zero value) every one delivered to kept up to
// two sockets open for IdleConnTimeout, and 1,000 jobs with webhooks to
// 1,000 ports held 1,000 sockets (file descriptors) for 30 s.
const webhookMaxIdleConns = 32

func newWebhookSender(secret []byte, allowPrivate bool, now Clock) *webhookSender {
	return newWebhookSenderVia(webhookDialer(allowPrivate, nil), secret, now)
}

// webhookDialer is the webhook client's dialer: unless allowPrivate, every
// address it dials, after resolution by resolver (nil: the default), goes
// through dialGuard.
func webhookDialer(allowPrivate bool, resolver *net.Resolver) *net.Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second, Resolver: resolver}
	if !allowPrivate {
		d.Control = dialGuard
	}
	return d
}

func newWebhookSenderVia(d *net.Dialer, secret []byte, now Clock) *webhookSender {
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would dial for us, around the guard
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: webhookAttemptTimeout,
		MaxIdleConnsPerHost:   2,
		MaxIdleConns:          webhookMaxIdleConns,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	client := &http.Client{
		Timeout:   webhookAttemptTimeout,
		Transport: tr,
		// Never follow: a redirect is the receiver's answer, and following
		// it would send the signed body somewhere the client did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &webhookSender{client: client, key: signingKey(secret), now: now}
}

// signingKey is the HMAC key of a configured secret.
func signingKey(secret []byte) []byte {
	if rest, ok := bytes.CutPrefix(secret, []byte("whsec_")); ok {
		if k, err := base64.StdEncoding.DecodeString(string(rest)); err == nil && len(k) > 0 {
			return k
		}
	}
	return secret
}

// deliveryError is a failed attempt; permanent ones are not retried.
type deliveryError struct {
	permanent  bool
	retryAfter time.Duration // the receiver's Retry-After, if any
	status     int           // the receiver's answer, 0 if none
	reason     string        // the short reason recorded on the job (WebhookDelivery.Reason)
	err        error
}

func (e *deliveryError) Error() string { return e.err.Error() }
func (e *deliveryError) Unwrap() error { return e.err }

// send makes one attempt. A 2xx is success; 408, 429 and 5xx and network
// errors are worth retrying; any other answer (4xx, and 3xx, which is not
// followed) and a refused target are permanent.
func (s *webhookSender) send(ctx context.Context, url, id string, body []byte) error {
	if len(s.key) == 0 {
		return &deliveryError{permanent: true, reason: "not_signed", err: errors.New("no queue.webhook_secret: unsigned webhooks are not sent")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return &deliveryError{permanent: true, reason: "invalid_url", err: fmt.Errorf("%w: %w", ErrWebhookTarget, err)}
	}
	t := s.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-webhook")
	req.Header.Set("X-Sluice-Job-Id", id)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(t.Unix(), 10))
	req.Header.Set("webhook-signature", SignStandard(s.key, id, t, body))
	req.Header.Set("X-Sluice-Signature", Sign(s.key, t, body))
	resp, err := s.client.Do(req)
	if err != nil {
		refused := errors.Is(err, ErrWebhookTarget)
		return &deliveryError{permanent: refused, reason: networkReason(err, refused), err: err}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection for small answers
	resp.Body.Close()
	code := resp.StatusCode
	if code/100 == 2 {
		return nil
	}
	e := &deliveryError{status: code, reason: "receiver_error", err: fmt.Errorf("receiver answered %s", resp.Status)}
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		e.retryAfter = retryAfter(resp.Header.Get("Retry-After"), t)
	default:
		e.permanent = true
	}
	return e
}

// networkReason is the recorded reason of an attempt that got no answer.
func networkReason(err error, refused bool) string {
	var ne net.Error
	switch {
	case refused:
		return "destination_refused"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "network_error"
	}
}

// retryAfter reads the receiver's Retry-After, bounded to an hour
// (a longer wait is past any delivery budget anyway).
func retryAfter(v string, now time.Time) time.Duration {
	d := proxy.ParseRetryAfter(strings.TrimSpace(v), now)
	if d < 0 || d > time.Hour {
		return time.Hour
	}
	return d
}

// SignStandard is the Standard Webhooks webhook-signature value.
func SignStandard(key []byte, id string, t time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(t.Unix(), 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Sign is the X-Sluice-Signature value for body sent at t.
func Sign(key []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}
