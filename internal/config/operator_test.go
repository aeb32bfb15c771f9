package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What sluice check passed and serve could not use: a listen port out of
// range passed check and failed at bind time with Go's text and no line; a
// backend URL with no host or an impossible port passed and every request
// failed at dial time; the same URL twice in a model was silently one
// backend; a negative max_queued also blamed max_queued_per_tenant, a key
// the file did not have.
func TestOperatorMistakesNamedAtTheirLine(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // each in the message, after the file name
		not       []string // none in the message
	}{
		{"listen port out of range", "listen: \"127.0.0.1:99999\"\n" + minimal,
			[]string{`:1: listen: want host:port or :port, got "127.0.0.1:99999" (port "99999" is not a number from 0 (any free port) to 65535)`}, nil},
		{"listen with an empty port", "listen: \"127.0.0.1:\"\n" + minimal,
			[]string{`:1: listen: want host:port or :port, got "127.0.0.1:" (the port is empty`}, nil},
		{"admin.listen port out of range", "admin:\n  listen: \":70000\"\n" + minimal,
			[]string{`:2: admin.listen: want host:port or "off", got ":70000" (port "70000"`}, nil},
		{"queue.listen port out of range", "queue:\n  listen: \"127.0.0.1:65536\"\n" + minimal,
			[]string{`:2: queue.listen: want host:port, got "127.0.0.1:65536" (port "65536"`}, nil},
		{"backend URL port out of range", "models:\n  - name: m\n    backends:\n      - url: http://127.0.0.1:99999\n",
			[]string{`:4: models[0].backends[0].url: port "99999" of "http://127.0.0.1:99999" is not a port number (1 to 65535)`}, nil},
		{"backend URL without a host", "models:\n  - name: m\n    backends:\n      - url: \"http://\"\n",
			[]string{`:4: models[0].backends[0].url: want http://host[:port] with a host, got "http://"`}, nil},
		{"the same backend twice in a model", "models:\n  - name: m\n    backends:\n      - url: http://10.0.0.1:8000\n      - url: http://10.0.0.1:8000\n",
			[]string{`:5: models[0].backends[1].url: "http://10.0.0.1:8000" is already models[0].backends[0]: a URL is one backend`}, nil},
		{"a short probe interval meets the default timeout", "health:\n  active:\n    interval: 1s\n" + minimal,
			[]string{`:2: health.active.timeout: must be positive and at most health.active.interval, got 2s with interval 1s (the timeout's default is 2s`}, nil},
		{"a list where a duration belongs names the duration", "models:\n  - name: m\n    max_wait: [1]\n    backends:\n      - url: http://10.0.0.1:8000\n",
			[]string{`:3: models[0].max_wait: want a single duration such as 500ms or 5s, got a list`}, nil},
		{"a section where a size belongs names the size", "max_body_bytes:\n  mb: 1\n" + minimal,
			[]string{`:2: max_body_bytes: want a single size such as 8MiB or 1048576, got a section of keys`}, nil},
		{"a backend entry without url says so", "models:\n  - name: m\n    backends:\n      - weight: 2\n",
			[]string{`:4: models[0].backends[0].url: is missing or empty: each backend needs its base URL, e.g. url: http://10.0.0.7:8000`}, nil},
		{"a negative max_queued blames max_queued alone", "admission:\n  max_queued: -5\n" + minimal,
			[]string{`:2: admission.max_queued: must be at least 1, got -5`}, []string{"max_queued_per_tenant"}},
		{"max_queued_per_tenant names the bound", "admission:\n  max_queued: 10\n  max_queued_per_tenant: 20\n" + minimal,
			[]string{`:3: admission.max_queued_per_tenant: must be between 0 (= max_queued) and max_queued, got 20 (max_queued is 10)`}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "sluice.yaml")
			if err := os.WriteFile(p, []byte(tc.src), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil {
				t.Fatal("accepted an invalid config")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, p+w) {
					t.Errorf("error\n%s\ndoes not contain %q", msg, p+w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(msg, n) {
					t.Errorf("error\n%s\nmentions %q", msg, n)
				}
			}
		})
	}
}

// Addresses net.Listen takes stay accepted: port 0, a service name, IPv6.
func TestListenAddressesServeTakesAreAccepted(t *testing.T) {
	for _, addr := range []string{":0", ":8080", "127.0.0.1:65535", "[::1]:8080", "localhost:http"} {
		p := filepath.Join(t.TempDir(), "sluice.yaml")
		src := "listen: \"" + addr + "\"\nmodels:\n  - name: m\n    backends:\n      - url: http://10.0.0.1:8000\n      - url: http://10.0.0.1:8001\n"
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err != nil {
			t.Errorf("listen %q refused: %v", addr, err)
		}
	}
}
