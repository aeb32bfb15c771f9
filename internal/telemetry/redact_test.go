package telemetry

import "testing"

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://user:pw@127.0.0.1:8000/v1":      "http://user:xxxxx@127.0.0.1:8000/v1",
		"http://user:p@ss@host/x%zz":            "http://user:xxxxx@host/x%zz", // does not parse; still hidden
		"ftp://u:secret@host":                   "ftp://u:xxxxx@host",
		"http://host:8000/a@b":                  "http://host:8000/a@b", // an @ in the path is no userinfo
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
