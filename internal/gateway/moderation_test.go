package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gw/sluice/internal/config"
)

// A moderation without a model (OpenAI makes it optional) goes to the one
// model declared to serve moderations, with the model added to the body
// it forwards; with none or several declared it is refused 400 naming the
// parameter and the models a client may name.
func TestModerationWithoutModel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		declared []string
		code     int
		want     string // in the answer
	}{
		{name: "none declared", code: 400, want: "no model here is declared to serve moderations"},
		{name: "one declared", declared: []string{"m2"}, code: 200, want: `"results"`},
		{name: "two declared", declared: []string{"m1", "m2"}, code: 400, want: "the models serving moderations here are 'm1', 'm2'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			got := map[string][]string{} // bodies by backend
			backend := func(name string) string {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					mu.Lock()
					got[name] = append(got[name], string(b))
					mu.Unlock()
					w.Header().Set("Content-Type", "application/json")
					io.WriteString(w, `{"id":"modr-1","model":"`+name+`","results":[{"flagged":false,"categories":{},"category_scores":{}}]}`)
				}))
				t.Cleanup(srv.Close)
				return srv.URL
			}
			cfg := testConfig(backend("m1"))
			cfg.Models = append(cfg.Models, config.Model{Name: "m2", Policy: "round_robin", Backends: []config.Backend{{URL: backend("m2")}}})
			for i := range cfg.Models {
				for _, d := range tc.declared {
					cfg.Models[i].Moderation = cfg.Models[i].Moderation || cfg.Models[i].Name == d
				}
			}
			srv, _ := startGateway(t, cfg)
			resp := post(t, srv.URL+"/v1/moderations", `{"input":"hello"}`)
			body := readAll(t, resp)
			if resp.StatusCode != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s; want %d with %s", resp.StatusCode, body, tc.code, tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.code != 200 {
				if code, param := errParam(t, body); code != "missing_model" || param != "model" {
					t.Fatalf("code %q param %q; want missing_model naming model", code, param)
				}
				if len(got) != 0 {
					t.Fatalf("backends were sent %v", got)
				}
				return
			}
			if resp.Header.Get("X-Sluice-Model") != "m2" || len(got["m2"]) != 1 || len(got["m1"]) != 0 {
				t.Fatalf("X-Sluice-Model %q, bodies %v; want one, to m2", resp.Header.Get("X-Sluice-Model"), got)
			}
			if b := got["m2"][0]; b != `{"model":"m2","input":"hello"}` {
				t.Fatalf("m2 was sent %s; want the model added", b)
			}
		})
	}
}
