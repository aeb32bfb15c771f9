package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// respEvent is one parsed Responses stream event.
type respEvent struct {
	typ  string
	data string
	obj  struct {
		Type           string          `json:"type"`
		SequenceNumber int             `json:"sequence_number"`
		Response       *wireResponse   `json:"response"`
		Delta          string          `json:"delta"`
		Text           string          `json:"text"`
		ItemID         string          `json:"item_id"`
		Item           *outputMessage  `json:"item"`
		Logprobs       json.RawMessage `json:"logprobs"`
	}
}

// respStreamEvents splits a complete Responses stream, checking the framing
// byte by byte: every event is exactly "event: T\ndata: JSON\n\n", the
// payload's type is T and sequence_number counts from 0.
func respStreamEvents(t testing.TB, body []byte) []respEvent {
	t.Helper()
	s := string(body)
	if !strings.HasSuffix(s, "\n\n") {
		t.Fatalf("stream does not end with a blank line: %q", tail(s))
	}
	var out []respEvent
	for i, raw := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n") {
		ev, err := parseRespEvent(raw)
		if err != nil {
			t.Fatal(err)
		}
		if ev.obj.SequenceNumber != i {
			t.Fatalf("event %d has sequence_number %d", i, ev.obj.SequenceNumber)
		}
		out = append(out, ev)
	}
	return out
}

func parseRespEvent(raw string) (respEvent, error) {
	var ev respEvent
	head, data, ok := strings.Cut(raw, "\n")
	typ, ok1 := strings.CutPrefix(head, "event: ")
	payload, ok2 := strings.CutPrefix(data, "data: ")
	if !ok || !ok1 || !ok2 || strings.Contains(payload, "\n") {
		return ev, errors.New("bad SSE event framing: " + raw)
	}
	ev.typ, ev.data = typ, payload
	if err := json.Unmarshal([]byte(payload), &ev.obj); err != nil {
		return ev, err
	}
	if ev.obj.Type != typ {
		return ev, errors.New("event line " + typ + " carries type " + ev.obj.Type)
	}
	if !strings.HasPrefix(payload, `{"type":"`+typ+`","sequence_number":`) {
		return ev, errors.New("payload does not start with type and sequence_number: " + payload)
	}
	return ev, nil
}

func respTypes(evs []respEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.typ)
	}
	return out
}

func wantSequence(deltas int, last string) []string {
	seq := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	for range deltas {
		seq = append(seq, "response.output_text.delta")
	}
	return append(seq, "response.output_text.done", "response.content_part.done", "response.output_item.done", last)
}

func TestResponsesStreamSequence(t *testing.T) {
	_, url := startSim(t, fastConfig())
	resp := post(t, t.Context(), url+"/v1/responses", respBody("stream these words", 5, `,"stream":true`))
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d content-type %q", resp.StatusCode, ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), "[DONE]") {
		t.Error("a Responses stream must not carry [DONE]")
	}
	evs := respStreamEvents(t, body)
	if got, want := strings.Join(respTypes(evs), " "), strings.Join(wantSequence(5, "response.incomplete"), " "); got != want {
		t.Fatalf("events\n %s\nwant\n %s", got, want)
	}
	created, final := evs[0].obj.Response, evs[len(evs)-1].obj.Response
	if created == nil || created.Status != "in_progress" || created.Usage != nil || len(created.Output) != 0 || !strings.Contains(evs[0].data, `"output":[]`) {
		t.Errorf("response.created: %s", evs[0].data)
	}
	if final == nil || final.ID != created.ID || final.Status != "incomplete" || final.IncompleteDetails == nil ||
		final.Usage == nil || final.Usage.InputTokens != 3 || final.Usage.OutputTokens != 5 || final.Usage.TotalTokens != 8 {
		t.Fatalf("final event: %s", evs[len(evs)-1].data)
	}
	added := evs[2].obj.Item
	if added == nil || added.Status != "in_progress" || len(added.Content) != 0 || added.ID != final.Output[0].ID {
		t.Errorf("output_item.added: %s", evs[2].data)
	}
	var deltas string
	for _, e := range evs[4:9] {
		if e.obj.ItemID != final.Output[0].ID || string(e.obj.Logprobs) != "[]" || len(strings.Fields(e.obj.Delta)) != 1 {
			t.Errorf("delta event %s", e.data)
		}
		deltas += e.obj.Delta
	}
	if deltas != final.text() || evs[9].obj.Text != deltas {
		t.Errorf("deltas %q, output_text.done %q, final %q", deltas, evs[9].obj.Text, final.text())
	}
	// The stream and the non-stream answer say the same thing.
	_, b := postRead(t, url+"/v1/responses", respBody("stream these words", 5, ""))
	if whole := decode[wireResponse](t, b); whole.text() != deltas {
		t.Errorf("non-stream text %q, stream %q", whole.text(), deltas)
	}
	// A delta event, byte for byte, is what encoding/json gives for it.
	want, _ := json.Marshal(struct {
		Type           string     `json:"type"`
		SequenceNumber int        `json:"sequence_number"`
		ItemID         string     `json:"item_id"`
		OutputIndex    int        `json:"output_index"`
		ContentIndex   int        `json:"content_index"`
		Delta          string     `json:"delta"`
		Logprobs       []struct{} `json:"logprobs"`
	}{"response.output_text.delta", 4, final.Output[0].ID, 0, 0, evs[4].obj.Delta, []struct{}{}})
	if !strings.Contains(string(body), "event: response.output_text.delta\ndata: "+string(want)+"\n\n") {
		t.Errorf("delta bytes differ from encoding/json's %s", want)
	}
}

// Without max_output_tokens the stream ends with response.completed.
func TestResponsesStreamCompleted(t *testing.T) {
	cfg := fastConfig()
	cfg.DefaultMaxTokens = 3
	_, url := startSim(t, cfg)
	_, body := postRead(t, url+"/v1/responses", respBody("x", 0, `,"stream":true`))
	evs := respStreamEvents(t, body)
	if got, want := strings.Join(respTypes(evs), " "), strings.Join(wantSequence(3, "response.completed"), " "); got != want {
		t.Fatalf("events %s", got)
	}
	if f := evs[len(evs)-1].obj.Response; f.Status != "completed" || f.IncompleteDetails != nil || f.Output[0].Status != "completed" {
		t.Errorf("final %s", evs[len(evs)-1].data)
	}
}

// Tokens leave as the engine makes them: the first delta arrives while
// the sequence is still decoding a long answer.
func TestResponsesStreamFlushesPerToken(t *testing.T) {
	s, url := startSim(t, fastConfig())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	resp := post(t, ctx, url+"/v1/responses", respBody("long answer", 60000, `,"stream":true`))
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for {
		ev, err := readRespEvent(r)
		if err != nil {
			t.Fatal(err)
		}
		if ev.typ == "response.output_text.delta" {
			break
		}
	}
	if st := s.Stats(); st.Running != 1 {
		t.Errorf("first delta read, but the sequence is not running: %+v", st)
	}
	cancel()
	waitFor(t, "stream cancellation counted", func() bool {
		st := s.Stats()
		return st.Cancelled == 1 && st.Running == 0
	})
}

// readRespEvent reads one event from a live Responses stream.
func readRespEvent(r *bufio.Reader) (respEvent, error) {
	var lines []string
	for range 3 {
		l, err := r.ReadString('\n')
		if err != nil {
			return respEvent{}, err
		}
		lines = append(lines, l)
	}
	if lines[2] != "\n" {
		return respEvent{}, errors.New("event not followed by a blank line")
	}
	return parseRespEvent(strings.TrimSuffix(lines[0]+lines[1], "\n"))
}

func TestResponsesFaults(t *testing.T) {
	t.Run("error rate: 500 before the stream", func(t *testing.T) {
		cfg := fastConfig()
		cfg.Faults.ErrorRate = 1
		_, url := startSim(t, cfg)
		resp := post(t, t.Context(), url+"/v1/responses", respBody("x", 2, `,"stream":true`))
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(b), `"type":"server_error"`) {
			t.Errorf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	})
	t.Run("disconnect cuts the stream without the final event", func(t *testing.T) {
		cfg := fastConfig()
		cfg.Faults.DisconnectRate = 1
		s, url := startSim(t, cfg)
		resp := post(t, t.Context(), url+"/v1/responses", respBody("cut me", 10, `,"stream":true`))
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		deltas, id := 0, ""
		var err error
		for {
			var ev respEvent
			if ev, err = readRespEvent(r); err != nil {
				break
			}
			switch ev.typ {
			case "response.created":
				id = ev.obj.Response.ID
			case "response.output_text.delta":
				deltas++
			case "response.completed", "response.incomplete", "response.output_text.done":
				t.Fatalf("a cut stream sent %s", ev.typ)
			}
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Errorf("stream ended with %v, want a cut", err)
		}
		if deltas != 5 {
			t.Errorf("%d deltas before the cut, want half of 10", deltas)
		}
		waitFor(t, "disconnect counted", func() bool {
			st := s.Stats()
			return st.Disconnected == 1 && st.Running == 0 && st.Completed == 0
		})
		if status, _ := getRead(t, url+"/v1/responses/"+id); status != 404 {
			t.Errorf("a cut response was stored (GET %d)", status)
		}
	})
	t.Run("disconnect, non-stream: no answer", func(t *testing.T) {
		cfg := fastConfig()
		cfg.Faults.DisconnectRate = 1
		s, url := startSim(t, cfg)
		if _, _, err := tryPost(url+"/v1/responses", respBody("cut me", 4, "")); err == nil {
			t.Fatal("want a transport error from the cut connection")
		}
		waitFor(t, "disconnect counted", func() bool { return s.Stats().Disconnected == 1 && s.Stats().Running == 0 })
	})
	t.Run("hang until the client gives up", func(t *testing.T) {
		hangUntilClientCancels(t, "/v1/responses", respBody("hang", 2, `,"stream":true`))
	})
}

func TestResponsesQueueFull503(t *testing.T) {
	cfg := fastConfig()
	cfg.Slots, cfg.MaxWaiting = 1, 1
	s, url := startSim(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range 2 { // one running, one waiting
		resp := post(t, ctx, url+"/v1/responses", respBody("hold", 60000, `,"stream":true`))
		defer resp.Body.Close()
	}
	waitFor(t, "one running and one waiting", func() bool { st := s.Stats(); return st.Running == 1 && st.Waiting == 1 })
	status, body := postRead(t, url+"/v1/responses", respBody("x", 1, ""))
	if status != 503 || string(body) != busyBody {
		t.Errorf("%d %s", status, body)
	}
}

func TestResponsesInstantStream(t *testing.T) {
	_, url := startSim(t, Config{Instant: true})
	_, body := postRead(t, url+"/v1/responses", respBody("a b", 0, `,"stream":true`))
	evs := respStreamEvents(t, body)
	if got, want := strings.Join(respTypes(evs), " "), strings.Join(wantSequence(4, "response.completed"), " "); got != want {
		t.Fatalf("events %s", got)
	}
	if f := evs[len(evs)-1].obj.Response; f.text() != "the sluice gate opens " || f.Usage.InputTokens != 2 {
		t.Errorf("final %s", evs[len(evs)-1].data)
	}
}
