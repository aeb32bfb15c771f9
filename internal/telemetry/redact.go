package telemetry

import (
	"errors"
	"net"
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
// holding '/', and a hidden port costs less than a shown password. That
// stays so (2026-12-06): "http://h:8000/a@b" is, letter for letter, also
// the user h with the password "8000/a" at host b, and nothing in the
// text tells the two apart. What can be told apart is an authority that
// opens with an IPv6 literal ("[::1]:8000/a@b"): userinfo cannot hold '['
// (RFC 3986 §3.2.1; the literal is the host's alone), so a bracketed
// IPv6 address, with or without a port of digits, followed by the end,
// '/', '?' or '#', is the whole authority, and an '@' after it is in the
// path or query (was shown as "[:xxxxx@b").
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
	from := 0 // where the userinfo's ':' is looked for
	if end := ipLiteralEnd(rest); end > 0 {
		if authorityEnds(rest[end:]) {
			return rest // "[::1]:8000/a@b": the '@' is past the authority
		}
		from = end // "[::1]:pa/ss@h": not a URL; hide what follows the literal
	}
	colon := strings.IndexByte(rest[from:at], ':')
	if colon < 0 {
		return rest
	}
	colon += from
	return rest[:colon+1] + "xxxxx" + rest[at:]
}

// ipLiteralEnd is the length of the IPv6 literal rest opens with
// ("[::1]", "[fe80::1%eth0]"), or 0 when it opens with none: a '[' that
// does not close on an IPv6 address may be a user's text.
func ipLiteralEnd(rest string) int {
	if !strings.HasPrefix(rest, "[") {
		return 0
	}
	rb := strings.IndexByte(rest, ']')
	if rb < 0 {
		return 0
	}
	addr := rest[1:rb]
	if zone := strings.IndexByte(addr, '%'); zone >= 0 {
		addr = addr[:zone] // a zone ("%25eth0") is the interface's name
	}
	if ip := net.ParseIP(addr); ip == nil || !strings.Contains(addr, ":") {
		return 0
	}
	return rb + 1
}

// authorityEnds: after, what follows a host, ends the authority there:
// it is empty, or a port of digits (or none) then the end, '/', '?' or
// '#' (RFC 3986 §3.2).
func authorityEnds(after string) bool {
	if strings.HasPrefix(after, ":") {
		after = strings.TrimLeft(after[1:], "0123456789")
	}
	return after == "" || strings.ContainsRune("/?#", rune(after[0]))
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
