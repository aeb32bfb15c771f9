package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func doRead(t testing.TB, method, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func createResponse(t testing.TB, url, body string) (wireResponse, []byte) {
	t.Helper()
	status, b := postRead(t, url+"/v1/responses", body)
	if status != 200 {
		t.Fatalf("create: %d %s", status, b)
	}
	return decode[wireResponse](t, b), b
}

func notFoundBody(id string) string {
	return `{"error":{"message":"Response with id '` + id + `' not found.","type":"invalid_request_error","param":null,"code":null}}`
}

func TestResponsesGetDeleteCancel(t *testing.T) {
	_, url := startSim(t, fastConfig())
	r, created := createResponse(t, url, respBody("keep me", 3, ""))
	status, got := getRead(t, url+"/v1/responses/"+r.ID)
	if status != 200 || string(got) != string(created) {
		t.Fatalf("GET: %d\n got %s\nwant %s", status, got, created)
	}
	// Cancel is for background responses only; this one stays retrievable.
	status, b := postRead(t, url+"/v1/responses/"+r.ID+"/cancel", "")
	if e := decode[errorBody](t, b); status != 400 || e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, "background") {
		t.Errorf("cancel: %d %s", status, b)
	}
	status, b = doRead(t, http.MethodDelete, url+"/v1/responses/"+r.ID)
	if want := `{"id":"` + r.ID + `","object":"response","deleted":true}`; status != 200 || string(b) != want {
		t.Errorf("DELETE: %d %s, want %s", status, b, want)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, ""}, {http.MethodDelete, ""}, {http.MethodGet, "/input_items"}, {http.MethodPost, "/cancel"},
	} {
		status, b := doRead(t, c.method, url+"/v1/responses/"+r.ID+c.path)
		if status != 404 || string(b) != notFoundBody(r.ID) {
			t.Errorf("%s %s after delete: %d %s", c.method, c.path, status, b)
		}
	}
}

func TestResponsesStoreFalseNotRetrievable(t *testing.T) {
	_, url := startSim(t, fastConfig())
	r, _ := createResponse(t, url, respBody("forget me", 2, `,"store":false`))
	if !strings.HasPrefix(r.ID, "resp_") || r.Store {
		t.Fatalf("store false echoed as %v, id %q", r.Store, r.ID)
	}
	if status, b := getRead(t, url+"/v1/responses/"+r.ID); status != 404 || string(b) != notFoundBody(r.ID) {
		t.Errorf("GET: %d %s", status, b)
	}
	status, b := postRead(t, url+"/v1/responses", respBody("next", 2, `,"previous_response_id":"`+r.ID+`"`))
	if status != 400 {
		t.Fatalf("follow-up of an unstored response: %d %s", status, b)
	}
	want := `{"error":{"message":"Previous response with id '` + r.ID + `' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}`
	if string(b) != want {
		t.Errorf("unknown previous_response_id:\n got %s\nwant %s", b, want)
	}
}

// A streamed response is stored as its final event shows it.
func TestResponsesStreamStored(t *testing.T) {
	_, url := startSim(t, fastConfig())
	_, body := postRead(t, url+"/v1/responses", respBody("streamed", 4, `,"stream":true`))
	evs := respStreamEvents(t, body)
	last := evs[len(evs)-1]
	final := last.data[strings.Index(last.data, `"response":`)+len(`"response":`) : len(last.data)-1]
	id := last.obj.Response.ID
	if status, got := getRead(t, url+"/v1/responses/"+id); status != 200 || string(got) != final {
		t.Errorf("GET %d\n got %s\nwant %s", status, got, final)
	}
}

// previous_response_id puts the stored conversation (input and output,
// not instructions) before this input: the prompt grows by both, the
// first turn's prompt blocks come from the prefix cache, and the text is
// what chat gives for the same conversation.
func TestResponsesPreviousResponseChain(t *testing.T) {
	s, url := startSim(t, fastConfig()) // BlockSize 16
	first, _ := createResponse(t, url, respBody(words("a", 40), 8, `,"instructions":"old rules"`))
	if first.Usage.InputTokens != 42 {
		t.Fatalf("first prompt %d tokens", first.Usage.InputTokens)
	}
	second, _ := createResponse(t, url, respBody(words("b", 5), 4,
		`,"instructions":"old rules","previous_response_id":"`+first.ID+`"`))
	// 2 instruction words + 40 earlier input + 8 earlier output + 5 new.
	if u := second.Usage; u.InputTokens != 55 || u.InputTokensDetails.CachedTokens != 32 {
		t.Errorf("follow-up usage %+v, want 55 input tokens, 32 cached (two 16-word blocks)", u)
	}
	if second.PreviousResponseID == nil || *second.PreviousResponseID != first.ID {
		t.Errorf("previous_response_id echoed as %v", second.PreviousResponseID)
	}
	msgs, _ := json.Marshal([]map[string]string{
		{"role": "system", "content": "old rules"}, {"role": "user", "content": words("a", 40)},
		{"role": "assistant", "content": first.text()}, {"role": "user", "content": words("b", 5)},
	})
	_, cb := postRead(t, url+"/v1/chat/completions", `{"messages":`+string(msgs)+`,"max_tokens":4}`)
	if c := decode[chatCompletion](t, cb); c.Choices[0].Message.Content != second.text() || c.Usage.PromptTokens != 55 {
		t.Errorf("chat on the same conversation: %q (%d), responses %q", c.Choices[0].Message.Content, c.Usage.PromptTokens, second.text())
	}
	// A third link carries the whole chain; the new instructions replace
	// the old ones rather than adding to them.
	third, _ := createResponse(t, url, respBody("c", 2, `,"previous_response_id":"`+second.ID+`"`))
	if third.Usage.InputTokens != 40+8+5+4+1 {
		t.Errorf("third prompt %d tokens, want %d", third.Usage.InputTokens, 40+8+5+4+1)
	}
	if st := s.Stats(); st.PrefixHitTokens < 32 {
		t.Errorf("prefix hits %d", st.PrefixHitTokens)
	}
}

func TestResponsesInputItems(t *testing.T) {
	_, url := startSim(t, fastConfig())
	r, _ := createResponse(t, url, `{"model":"sim-model","instructions":"not an item","max_output_tokens":1,"input":[`+
		`{"role":"system","content":"be kind"},`+
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"hi there"}]},`+
		`{"role":"assistant","content":"earlier answer"},`+
		`{"type":"function_call_output","id":"fco_1","call_id":"c1","output":"42"}]}`)
	type list struct {
		Object  string            `json:"object"`
		Data    []json.RawMessage `json:"data"`
		FirstID *string           `json:"first_id"`
		LastID  *string           `json:"last_id"`
		HasMore bool              `json:"has_more"`
	}
	status, b := getRead(t, url+"/v1/responses/"+r.ID+"/input_items?order=asc")
	l := decode[list](t, b)
	if status != 200 || l.Object != "list" || len(l.Data) != 4 || l.HasMore {
		t.Fatalf("input_items: %d %s", status, b)
	}
	id0 := "msg_" + strings.TrimPrefix(r.ID, "resp_") + "_0"
	for i, want := range []string{
		`{"type":"message","id":"` + id0 + `","status":"completed","role":"system","content":[{"type":"input_text","text":"be kind"}]}`,
		`"role":"user","content":[{"type":"input_text","text":"hi there"}]}`,
		`"role":"assistant","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"earlier answer"}]}`,
		`{"type":"function_call_output","id":"fco_1","call_id":"c1","output":"42"}`,
	} {
		if !strings.HasSuffix(string(l.Data[i]), want) {
			t.Errorf("item %d: %s, want …%s", i, l.Data[i], want)
		}
	}
	if *l.FirstID != id0 || *l.LastID != "fco_1" {
		t.Errorf("first_id %s last_id %s", *l.FirstID, *l.LastID)
	}
	// Default order is desc; limit and after page through it.
	_, b = getRead(t, url+"/v1/responses/"+r.ID+"/input_items?limit=3")
	if d := decode[list](t, b); len(d.Data) != 3 || !d.HasMore || *d.FirstID != "fco_1" {
		t.Errorf("desc page 1: %s", b)
	} else {
		_, b = getRead(t, url+"/v1/responses/"+r.ID+"/input_items?limit=3&after="+*d.LastID)
		if d2 := decode[list](t, b); len(d2.Data) != 1 || d2.HasMore || *d2.FirstID != id0 {
			t.Errorf("desc page 2: %s", b)
		}
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "order=sideways"} {
		status, b := getRead(t, url+"/v1/responses/"+r.ID+"/input_items?"+q)
		e := decode[errorBody](t, b)
		if status != 400 || e.Error.Param == nil || !strings.HasPrefix(q, *e.Error.Param+"=") {
			t.Errorf("%s: %d %s", q, status, b)
		}
	}
}

func TestRespStoreBounds(t *testing.T) {
	st := newRespStore()
	small := func() *storedResponse { return &storedResponse{size: 10} }
	for i := range respStoreMaxResponses + 1 {
		st.put(fmt.Sprint(i), small())
	}
	if _, ok := st.get("0"); ok {
		t.Error("the oldest response survived past the count bound")
	}
	if _, ok := st.get("1"); !ok {
		t.Error("the second oldest was evicted too")
	}
	if len(st.byID) != respStoreMaxResponses {
		t.Errorf("%d kept", len(st.byID))
	}
	// Bytes: a big response pushes out as many old ones as it needs.
	st.put("big", &storedResponse{size: respStoreMaxBytes - 10*100})
	if len(st.byID) != 101 || st.bytes > respStoreMaxBytes {
		t.Errorf("after a big put: %d kept, %d bytes", len(st.byID), st.bytes)
	}
	st.put("huge", &storedResponse{size: respStoreMaxBytes + 1})
	if _, ok := st.get("huge"); ok {
		t.Error("a response over the byte bound was kept")
	}
	// Deletions leave no unbounded bookkeeping behind.
	for i := range 5 * respStoreMaxResponses {
		id := fmt.Sprint("d", i)
		st.put(id, small())
		st.delete(id)
	}
	if len(st.order) > 2*respStoreMaxResponses+1 {
		t.Errorf("order grew to %d", len(st.order))
	}
}
