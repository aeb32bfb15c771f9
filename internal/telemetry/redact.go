package telemetry

import "strings"

// RedactURL hides the password of s's userinfo ("http://user:xxxxx@host"),
// as url.URL.Redacted does, without parsing s: it is also applied to URLs
// that do not parse (the subject of a config error). A URL without a
// password is returned as it is. Used wherever a configured URL is shown
// (config errors, /status, logs): a backend's password belongs to the
// config file only.
func RedactURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	auth := s[i+3:]
	if end := strings.IndexAny(auth, "/?#"); end >= 0 {
		auth = auth[:end]
	}
	at := strings.LastIndexByte(auth, '@')
	if at < 0 {
		return s
	}
	colon := strings.IndexByte(auth[:at], ':')
	if colon < 0 {
		return s
	}
	start := i + 3 + colon + 1
	return s[:start] + "xxxxx" + s[i+3+at:]
}

// RedactURLs is RedactURL on each URL of a comma-separated list (a NATS
// server list).
func RedactURLs(list string) string {
	if !strings.Contains(list, "@") {
		return list
	}
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = RedactURL(p)
	}
	return strings.Join(parts, ",")
}
