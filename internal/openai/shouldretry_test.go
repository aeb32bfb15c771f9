package openai

import (
	"net/http/httptest"
	"testing"
	"time"
)

// RetryFutile follows the SDKs' rule (shouldretry.go): the header only
// where they would retry, and there when the answer is final or names a
// wait longer than they honour, to the millisecond they read.
func TestRetryFutile(t *testing.T) {
	for _, c := range []struct {
		status int
		wait   time.Duration
		final  bool
		want   bool
	}{
		{429, time.Minute, false, false},
		{429, time.Minute + time.Millisecond, false, false}, // past Node's bound, within Python's and Go's
		{429, 90 * time.Second, false, false},
		{429, 2 * time.Minute, false, false},
		{429, 2*time.Minute - 999*time.Microsecond, false, false}, // retry-after-ms 120000: honoured
		{429, 2*time.Minute + time.Microsecond, false, true},      // retry-after-ms 120001: not
		{429, 2*time.Minute + time.Millisecond, false, true},
		{503, time.Hour, false, true},
		{500, 0, false, false},
		{507, 0, true, true},
		{409, 0, true, true},
		{408, 0, true, true},
		{501, 0, true, true},
		{400, time.Hour, true, false}, // not retried anyway: no header
		{404, 0, true, false},
		{499, 0, true, false},
	} {
		if got := RetryFutile(c.status, c.wait, c.final); got != c.want {
			t.Errorf("RetryFutile(%d, %v, %v) = %v, want %v", c.status, c.wait, c.final, got, c.want)
		}
	}
}

func TestWriteErrorSaysWhenRetryIsFutile(t *testing.T) {
	for _, c := range []struct {
		e    *Error
		want string
	}{
		{&Error{Status: 507, Code: "storage_full", Final: true}, "false"},
		{&Error{Status: 429, Code: "rate_limit_exceeded", RetryAfter: 3 * time.Minute}, "false"},
		{&Error{Status: 429, Code: "rate_limit_exceeded", RetryAfter: 2 * time.Minute}, ""},
		{&Error{Status: 429, Code: "rate_limit_exceeded", RetryAfter: 2 * time.Second}, ""},
		{&Error{Status: 502, Code: "upstream_error", RetryAfter: time.Second}, ""},
		{&Error{Status: 400, Code: "invalid_value", Final: true}, ""},
	} {
		rec := httptest.NewRecorder()
		WriteError(rec, c.e)
		if got := rec.Header().Get("X-Should-Retry"); got != c.want {
			t.Errorf("%d %s: x-should-retry %q, want %q", c.e.Status, c.e.Code, got, c.want)
		}
	}
}

// Retry-After-Ms is rounded up, as Retry-After is and as the rate
// limiter writes it: the SDKs wait exactly what it says, so a value
// rounded down brought them back early, and a wait under a millisecond
// read "0" (retry at once). The rate limiter's own rounded-up figure, set
// before, is not lowered.
func TestWriteErrorRoundsRetryAfterMsUp(t *testing.T) {
	for _, c := range []struct {
		wait    time.Duration
		ms, sec string
	}{
		{300 * time.Microsecond, "1", "1"},
		{280*time.Millisecond + 600*time.Microsecond, "281", "1"},
		{2 * time.Second, "2000", "2"},
		{2*time.Second + time.Nanosecond, "2001", "3"},
	} {
		rec := httptest.NewRecorder()
		rec.Header().Set("retry-after-ms", "281") // what ratelimit.Result.WriteHeaders sets for 280.6 ms
		WriteError(rec, &Error{Status: 429, Code: "rate_limit_exceeded", RetryAfter: c.wait})
		if got := rec.Header().Get("Retry-After-Ms"); got != c.ms {
			t.Errorf("%v: Retry-After-Ms %q, want %q", c.wait, got, c.ms)
		}
		if got := rec.Header().Get("Retry-After"); got != c.sec {
			t.Errorf("%v: Retry-After %q, want %q", c.wait, got, c.sec)
		}
	}
}

// An error answer is never stored by a browser, proxy or CDN (the 503s of
// a saturated pool least of all), unless its writer set its own
// Cache-Control.
func TestWriteErrorIsNotStored(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, &Error{Status: 503, Code: "no_healthy_backend", RetryAfter: 5 * time.Second})
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	rec = httptest.NewRecorder()
	rec.Header().Set("Cache-Control", "private, max-age=3")
	WriteError(rec, &Error{Status: 404, Code: "model_not_found"})
	if got := rec.Header().Get("Cache-Control"); got != "private, max-age=3" {
		t.Errorf("Cache-Control %q, want the caller's", got)
	}
}
