package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CauseUnknown is what NetCause says of an error it has no name for; the
// full text goes in the line's detail field.
const CauseUnknown = "unexpected error (see detail)"

// NetCause names why a request of the gateway's own (an active health
// probe, a metrics scrape) failed, in a few stable words an operator can
// grep and alert on: "connection refused", "timeout after 2s",
// "status 503", "tls: certificate signed by unknown authority". Go's text
// (`Get "http://10.0.0.5:8000/health": dial tcp 10.0.0.5:8000: connect:
// connection refused`) repeats the URL, names Go's internals and changes
// between Go releases; it belongs in a detail field beside this one.
// timeout is the request's own bound, named in a timeout's text (0: not
// named). An error NetCause cannot name gives CauseUnknown.
func NetCause(err error, timeout time.Duration) string {
	if err == nil {
		return ""
	}
	var status interface{ HTTPStatus() int }
	if errors.As(err, &status) {
		return "status " + strconv.Itoa(status.HTTPStatus())
	}
	if s := tlsCause(err); s != "" {
		return s
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		if dns.IsNotFound {
			return "no such host"
		}
		if dns.IsTimeout {
			return "dns lookup timed out"
		}
		return "dns lookup failed"
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EPIPE):
		return "connection closed"
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		if timeout > 0 {
			return "timeout after " + timeout.String()
		}
		return "timeout"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	return CauseUnknown
}

// tlsCause names a TLS failure, or returns "".
func tlsCause(err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var header tls.RecordHeaderError
	var alert tls.AlertError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown):
		return "tls: certificate signed by unknown authority"
	case errors.As(err, &host):
		return "tls: certificate not valid for this host"
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "tls: certificate expired or not yet valid"
		}
		return "tls: certificate invalid"
	case errors.As(err, &verify):
		return "tls: certificate not verified"
	case errors.As(err, &header):
		return "tls: the server did not answer in TLS"
	case errors.As(err, &alert):
		return "tls: handshake refused by the server"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// net/http's own error, unwrapped: no type to match
		return "tls: the server did not answer in TLS"
	}
	return ""
}

// FileCause names why the gateway's own files (the job store's data
// directory, its marks) could not be read or written, in a few stable
// words as NetCause does for requests: "no space left on device",
// "disk quota exceeded", "read-only file system", "permission denied",
// "i/o error", "not found", "is a directory", "not a directory", "too
// many open files". Go's text (`open /var/lib/sluice/jetstream/...: no
// space left on device`) belongs in a detail field beside it. An error
// that is no file error is named by NetCause (the store's server is
// reached over a connection), else CauseUnknown.
func FileCause(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ENOSPC):
		return "no space left on device"
	case errors.Is(err, syscall.EDQUOT):
		return "disk quota exceeded"
	case errors.Is(err, syscall.EROFS):
		return "read-only file system"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	case errors.Is(err, syscall.EIO):
		return "i/o error"
	case errors.Is(err, fs.ErrNotExist):
		return "not found"
	case errors.Is(err, syscall.EISDIR):
		return "is a directory"
	case errors.Is(err, syscall.ENOTDIR):
		return "not a directory"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	}
	return NetCause(err, 0)
}
