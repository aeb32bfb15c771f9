package telemetry

import (
	"strings"
	"testing"
)

// FuzzRedactURLs: a URL list as configured (any scheme, user, password,
// host and path, a password with '%', '@' or ':' in it, a second URL in
// the list) is shown without its password: the password's text appears
// nowhere in the output, also when it holds '/', '?', '#' or ','. A
// password holding "://" is left out: it reads as a nested URL.
func FuzzRedactURLs(f *testing.F) {
	f.Add("nats", "u", "50%off", "h:4222", "", "nats://b:4222")
	f.Add("redis", "", "p@ss:word", "r:6379", "/0?x=a@b", "")
	f.Add("http", "user", "s3cr%zzet", "[::1]:8000", "/v1", "http://v:other@h")
	f.Fuzz(func(t *testing.T, scheme, user, pass, host, path, other string) {
		if scheme == "" || strings.ContainsAny(scheme, ":/?#@,") || strings.ContainsAny(user, ":/?#@,") ||
			strings.Contains(":"+pass, "://") || strings.ContainsAny(host, "/?#@,") ||
			path != "" && path[0] != '/' || strings.Contains(path, ",") || strings.Contains(other, ",") || len(pass) < 4 {
			return
		}
		list := scheme + "://" + user + ":" + pass + "@" + host + path
		if other != "" {
			list += "," + other
		}
		// The password must be its own text, not a piece of the rest.
		if rest := scheme + "://" + user + ":@" + host + path + "," + other + "xxxxx"; strings.Contains(rest, pass) {
			return
		}
		if out := RedactURLs(list); strings.Contains(out, pass) {
			t.Fatalf("RedactURLs(%q) = %q shows the password", list, out)
		}
	})
}
