package sim

import (
	"net/http"
	"testing"
)

// A sequence leaves the published gauges before its handler answers: a
// client that read its whole answer and then reads the engine's metrics
// finds it no longer running. The engine closed the sequence's done
// channel first and published the gauges after, so a scrape right after
// an answer sometimes counted it still running (a reported room of 15 of
// 16 on an idle engine: the gateway's TestSlowPrefillLongPromptsKeepTheRoom
// failed 1 run in 10 on it; review32).
func TestAnsweredSequenceLeftTheGaugesBeforeItsAnswer(t *testing.T) {
	s, url := startSim(t, fastConfig())
	for i := range 300 {
		code, body := postRead(t, url+"/v1/chat/completions",
			`{"model":"`+s.Config().Model+`","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`)
		if code != http.StatusOK {
			t.Fatalf("answer %d: %d %s", i, code, body)
		}
		if st := s.Stats(); st.Running != 0 || st.Waiting != 0 {
			t.Fatalf("after answer %d was read whole: running %d, waiting %d; want 0, 0", i, st.Running, st.Waiting)
		}
	}
}
