package telemetry

import (
	"errors"
	"net/url"
	"strings"
)

// RedactURL hides the password of s's userinfo ("http://user:xxxxx@host"),
// as url.URL.Redacted does, without parsing s: it is also applied to URLs
// that do not parse (the subject of a config error). A URL without a
// password is returned as it is. Used wherever a configured URL is shown
// (config errors, /status, logs): a backend's password belongs to the
// config file only.
//
// The userinfo runs from the scheme's "//" to the last '@' before the
// host, not to the first '/', '?' or '#': a password written raw in the
// config ("redis://u:pa/ss#1@r:6379") holds them, and stopping there
// showed it whole. An '@' inside a URL nested in the query
// ("?next=http://a:b@c") is not that '@'. The price is that an '@' in the
// path of a URL with a port ("http://h:8000/a@b") reads as userinfo and
// hides "8000/a": the text cannot tell a port and path from a password
// holding '/', and a hidden port costs less than a shown password.
func RedactURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	return s[:i+3] + redactAuthority(s[i+3:])
}

// redactAuthority is rest (what follows "scheme://") with the password of
// its userinfo replaced by xxxxx.
func redactAuthority(rest string) string {
	// The last '@' not preceded by a nested "://" ends the userinfo.
	scope := rest
	if n := strings.Index(rest, "://"); n >= 0 {
		scope = rest[:n]
	}
	at := strings.LastIndexByte(scope, '@')
	if at < 0 {
		return rest
	}
	colon := strings.IndexByte(rest[:at], ':')
	if colon < 0 {
		return rest
	}
	return rest[:colon+1] + "xxxxx" + rest[at:]
}

// RedactURLs is RedactURL on each URL of a comma-separated list (a NATS
// server list). A piece with no "://" of its own continues the one before
// it (a password holding ','), unless it is the first: the NATS client
// takes "u:p@host:4222" without a scheme, so a bare first piece is read as
// an authority.
func RedactURLs(list string) string {
	if !strings.Contains(list, "@") {
		return list
	}
	var urls []string
	for _, p := range strings.Split(list, ",") {
		if len(urls) > 0 && !strings.Contains(p, "://") {
			urls[len(urls)-1] += "," + p
			continue
		}
		urls = append(urls, p)
	}
	for i, u := range urls {
		if strings.Contains(u, "://") {
			urls[i] = RedactURL(u)
		} else {
			urls[i] = redactAuthority(u)
		}
	}
	return strings.Join(urls, ",")
}

// ErrURLPassword is why a URL holding a password did not parse, said in
// place of url.Parse's own cause: that quotes a piece of the text
// ("invalid port \":pa\" after host" for the password "pa/ss"), and so of
// the password.
var ErrURLPassword = errors.New("does not parse as a URL (a password holding '/', '?', '#', '@' or '%' must be percent-encoded: %2F %3F %23 %40 %25)")

// RedactURLError is err, a failure to use the URL list (a client library's
// connect), with a *url.Error's text replaced by ErrURLPassword's when
// list holds a password: the error still unwraps to err. Any other error
// is returned as it is (a dial error names the host, not the userinfo).
func RedactURLError(err error, list string) error {
	var ue *url.Error
	if err == nil || !errors.As(err, &ue) || RedactURLs(list) == list {
		return err
	}
	return redactedURLError{err}
}

type redactedURLError struct{ err error }

func (e redactedURLError) Error() string { return ErrURLPassword.Error() }
func (e redactedURLError) Unwrap() error { return e.err }
