package telemetry

import "testing"

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://user:pw@127.0.0.1:8000/v1":      "http://user:xxxxx@127.0.0.1:8000/v1",
		"http://user:p@ss@host/x%zz":            "http://user:xxxxx@host/x%zz", // does not parse; still hidden
		"ftp://u:secret@host":                   "ftp://u:xxxxx@host",
		"http://host/a@b":                       "http://host/a@b",       // an @ in the path is no userinfo
		"http://host:8000/a@b":                  "http://host:xxxxx@b",   // ...but with a port it reads as one: hidden, not shown (also user host, password "8000/a")
		"http://[::1]:8000/a@b":                 "http://[::1]:8000/a@b", // an IPv6 literal is a host: userinfo holds no '['
		"http://[::1]/a@b":                      "http://[::1]/a@b",      // (both were "http://[:xxxxx@b")
		"http://[fe80::1%25eth0]:80/v1?e=a@b":   "http://[fe80::1%25eth0]:80/v1?e=a@b",
		"http://u:pw@[::1]:8000/a@b":            "http://u:xxxxx@b", // a userinfo before the literal: the last '@' still ends it
		"http://u:pw@[::1]:8000/v1":             "http://u:xxxxx@[::1]:8000/v1",
		"http://[::1]:pa/ss@h":                  "http://[::1]:xxxxx@h", // no port after the literal: hidden
		"http://[fe80:1]:80/x@h":                "http://[fe80:xxxxx@h", // not an IPv6 address: may be a user's "[fe80"
		"http://user@host/":                     "http://user@host/",
		"http://127.0.0.1:8000":                 "http://127.0.0.1:8000",
		"not a url":                             "not a url",
		"redis://:pass@r:6379/0?x=http://a:b@c": "redis://:xxxxx@r:6379/0?x=http://a:b@c",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRedactURLPasswordWithDelimiters: a password written raw in the config
// may hold '/', '?', '#' and ','; the redactor stopped at the first of
// them and showed the password whole.
func TestRedactURLPasswordWithDelimiters(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:SECRET/x@r:6379/0":           "redis://:xxxxx@r:6379/0",
		"redis://u:SEC#RET@r:6379":             "redis://u:xxxxx@r:6379",
		"nats://u:SEC?RET@n:4222":              "nats://u:xxxxx@n:4222",
		"http://u:a/b?c#d@h:1/v1?q=http://x@y": "http://u:xxxxx@h:1/v1?q=http://x@y",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"nats://u:SEC,RET@a:4222,nats://b:4222": "nats://u:xxxxx@a:4222,nats://b:4222",
		"u:SECRET@a:4222":                       "u:xxxxx@a:4222",
		"nats://a:4222,nats://u:S/E#C@b:4222":   "nats://a:4222,nats://u:xxxxx@b:4222",
	} {
		if got := RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}
