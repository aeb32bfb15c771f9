package telemetry

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

type statusErr int

func (s statusErr) Error() string   { return fmt.Sprintf("probe: unexpected status %d", int(s)) }
func (s statusErr) HTTPStatus() int { return int(s) }

// NetCause names real failures of real requests in a few stable words.
func TestNetCauseNamesRealFailures(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	hangs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hangs.Close)
	cuts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(cuts.Close)
	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)

	get := func(url string, timeout time.Duration) error {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Get(url)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET %s succeeded", url)
		}
		return fmt.Errorf("probe %s: %w", url, err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", get(gone.URL, 0), "connection refused"},
		{"timeout", get(hangs.URL, 50*time.Millisecond), "timeout after 2s"},
		{"cut", get(cuts.URL, 0), "connection closed"},
		{"unknown authority", get(tlsSrv.URL, 0), "tls: certificate signed by unknown authority"},
		{"plain HTTP spoken TLS", get("https://"+cuts.Listener.Addr().String(), 0), "tls: the server did not answer in TLS"},
		{"status", fmt.Errorf("wrapped: %w", statusErr(503)), "status 503"},
		{"unnamed", errors.New("something else"), CauseUnknown},
	} {
		// the timeout named is the caller's bound, not the test client's
		if got := NetCause(tc.err, 2*time.Second); got != tc.want {
			t.Errorf("%s: NetCause(%q) = %q, want %q", tc.name, tc.err, got, tc.want)
		}
	}
}

// FileCause names real failures of real file operations in a few stable
// words, and leaves what is no file error to NetCause.
func TestFileCauseNamesRealFailures(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, missing := os.ReadFile(filepath.Join(dir, "missing"))
	_, isDir := os.ReadFile(dir)
	_, notDir := os.ReadFile(filepath.Join(file, "x"))
	for _, tc := range []struct {
		err  error
		want string
	}{
		{missing, "not found"},
		{isDir, "is a directory"},
		{notDir, "not a directory"},
		{fmt.Errorf("writing marks: %w", &os.PathError{Op: "write", Path: file, Err: syscall.ENOSPC}), "no space left on device"},
		{&os.PathError{Op: "open", Path: file, Err: syscall.EACCES}, "permission denied"},
		{&os.PathError{Op: "open", Path: file, Err: syscall.EROFS}, "read-only file system"},
		{syscall.ECONNREFUSED, "connection refused"},
		{errors.New("nats: something else"), CauseUnknown},
		{nil, ""},
	} {
		if got := FileCause(tc.err); got != tc.want {
			t.Errorf("FileCause(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
