package gateway

import (
	"io"
	"net/http"
	"testing"
)

// A client's credential in the query (Gemini's ?key=, RFC 6750's
// ?access_token=) goes only where its Authorization does
// (pass_client_auth); the rest of the query (Azure's api-version) reaches
// the backend as sent, byte for byte.
func TestQueryCredentialStaysAtTheGateway(t *testing.T) {
	const query = "api-version=2024-06-01&key=client-secret&%6Bey=enc&ACCESS_TOKEN=tok&x=a%2Cb"
	for _, c := range []struct {
		name, apiKey string
		pass         bool
		want         string
	}{
		{"no key", "", false, "api-version=2024-06-01&x=a%2Cb"},
		{"backend key", "backend-secret", false, "api-version=2024-06-01&x=a%2Cb"},
		{"pass_client_auth", "", true, query},
	} {
		got := make(chan string, 1)
		be := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			select {
			case got <- r.URL.RawQuery:
			default:
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[]}`)
		}))
		cfg := testConfig(be)
		cfg.Models[0].Backends[0].APIKey = c.apiKey
		cfg.Models[0].Backends[0].PassClientAuth = c.pass
		srv, _ := startGateway(t, cfg)
		resp := rawPost(t, srv.URL, "/v1/chat/completions?"+query, chatBody)
		if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d %s", c.name, resp.StatusCode, body)
		}
		if q := <-got; q != c.want {
			t.Errorf("%s: upstream query %q, want %q", c.name, q, c.want)
		}
	}
}

// A Responses follow-up's query is scrubbed alike (proxy.followUpRequest).
func TestFollowUpQueryCredentialStaysAtTheGateway(t *testing.T) {
	got := make(chan string, 1)
	be := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.URL.RawQuery:
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"resp_abc","object":"response","status":"completed","output":[]}`)
	}))
	srv, _ := startGateway(t, testConfig(be))
	resp, err := http.Get(srv.URL + "/v1/responses/resp_abc?include[]=x&key=client-secret")
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	resp.Body.Close()
	if q := <-got; q != "include[]=x" {
		t.Errorf("upstream query of the follow-up %q, want %q", q, "include[]=x")
	}
}
