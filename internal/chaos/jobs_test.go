package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// finishedJob is a terminal job's public JSON, as GET /v1/jobs/{id} and
// its webhook carry it.
func finishedJob(id, answer string) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "object": "job", "status": "succeeded", "attempts": 1,
		"finished_at": 1765000000, "result": map[string]any{"status_code": 200, "body": map[string]any{"answer": answer}}})
	return b
}

// TestJobCheckTellsARedeliveryFromASecondResult drives the job check the
// way a gateway SIGKILLed between the receiver's 2xx and its record of
// the delivery does: the restarted gateway sends the webhook again, same
// webhook-id, same result. That is at least once, one result: not
// duplicated (before, every second delivery was, and gateway-sigkill
// failed whenever its kill landed in that window). A second, different
// result, one other than the job's record, or a webhook-id other than
// the job's still is.
func TestJobCheckTellsARedeliveryFromASecondResult(t *testing.T) {
	type hook struct {
		webhookID string
		body      []byte
	}
	rec := finishedJob("j", "a")
	for _, c := range []struct {
		name       string
		hooks      []hook
		duped      int
		redelivery bool
	}{
		{"once", []hook{{"j", rec}}, 0, false},
		{"resent after a kill", []hook{{"j", rec}, {"j", rec}}, 0, true},
		{"a second result", []hook{{"j", rec}, {"j", finishedJob("j", "b")}}, 1, false},
		{"a result the record does not show", []hook{{"j", finishedJob("j", "b")}}, 1, false},
		{"another webhook-id", []hook{{"j", rec}, {"j-2", rec}}, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			row := checkJob(t, rec, func(send func(webhookID string, body []byte)) {
				for _, h := range c.hooks {
					send(h.webhookID, h.body)
				}
			})
			if row.Lost != 0 || row.Duped != c.duped {
				t.Errorf("lost %d, duplicated %d; want 0 and %d", row.Lost, row.Duped, c.duped)
			}
			notes := strings.Join(row.Notes, "\n")
			if got := strings.Contains(notes, "1 jobs' webhooks delivered again"); got != c.redelivery {
				t.Errorf("notes %q: a redelivery noted %v, want %v", notes, got, c.redelivery)
			}
		})
	}
}

// checkJob runs the job check on one accepted job "j" whose record (GET
// /v1/jobs/j) is rec, after hooks has sent its webhooks to the receiver.
func checkJob(t *testing.T, rec []byte, hooks func(send func(webhookID string, body []byte))) Row {
	t.Helper()
	return checkJobs(t, map[string][]byte{"j": rec}, []string{"j"}, hooks)
}

// checkJobs runs the job check on the accepted jobs, the store holding
// recs (GET /v1/jobs/{id}; 404 for another id), after hooks has sent its
// webhooks to the receiver.
func checkJobs(t *testing.T, recs map[string][]byte, accepted []string, hooks func(send func(webhookID string, body []byte))) Row {
	t.Helper()
	jt, err := startJobTracker()
	if err != nil {
		t.Fatal(err)
	}
	defer jt.close()
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, ok := recs[strings.TrimPrefix(r.URL.Path, "/v1/jobs/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(rec)
	}))
	defer gw.Close()
	jt.accepted = accepted
	hooks(func(webhookID string, body []byte) {
		req, _ := http.NewRequest(http.MethodPost, jt.hookURL, bytes.NewReader(body))
		req.Header.Set("webhook-id", webhookID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})
	var row Row
	jt.settle(context.Background(), gw.URL, 10*time.Second, &row)
	return row
}

// TestJobCheckAccountsForJobsTheClientNeverSaw sends webhooks of jobs the
// client was never told of, as a gateway SIGKILLed after it stored a job
// but before its 202 reached the client does: a webhook of a job the
// store holds, terminal, with that result, is at least once (counted
// unseen, the row passes); one of a job the store does not hold, or a
// body that is no job's result, is stray (the row fails); an unseen job
// whose record is not terminal is lost, one whose webhook shows another
// result than its record duplicated. Before, the receiver dropped every
// such webhook unread: each case passed.
func TestJobCheckAccountsForJobsTheClientNeverSaw(t *testing.T) {
	running, _ := json.Marshal(map[string]any{"id": "p", "object": "job", "status": "running"})
	recs := map[string][]byte{"j": finishedJob("j", "a"), "k": finishedJob("k", "b"), "p": running}
	noResult, _ := json.Marshal(map[string]any{"id": "k", "object": "job", "status": "succeeded", "finished_at": 1765000000})
	failedBare, _ := json.Marshal(map[string]any{"id": "k", "object": "job", "status": "failed", "finished_at": 1765000000})
	for _, c := range []struct {
		name                       string
		hooks                      map[string][]byte // by webhook-id, after j's own
		unseen, stray, lost, duped int
	}{
		{"its 202 lost, held by the store", map[string][]byte{"k": recs["k"]}, 1, 0, 0, 0},
		{"a job the store does not hold", map[string][]byte{"x": finishedJob("x", "c")}, 0, 1, 0, 0},
		{"not JSON", map[string][]byte{"y": []byte("{")}, 0, 1, 0, 0},
		{"succeeded without a result", map[string][]byte{"k": noResult}, 0, 1, 0, 0},
		{"failed with neither an error nor a result", map[string][]byte{"k": failedBare}, 0, 1, 0, 0},
		{"held, not terminal", map[string][]byte{"p": finishedJob("p", "d")}, 0, 0, 1, 0},
		{"held, another result", map[string][]byte{"k": finishedJob("k", "e")}, 0, 0, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			row := checkJobs(t, recs, []string{"j"}, func(send func(webhookID string, body []byte)) {
				send("j", recs["j"])
				for id, body := range c.hooks {
					send(id, body)
				}
			})
			row.Jobs = true
			if row.Unseen != c.unseen || row.Stray != c.stray || row.Lost != c.lost || row.Duped != c.duped {
				t.Errorf("unseen %d, stray %d, lost %d, duplicated %d; want %d, %d, %d, %d (notes %q)",
					row.Unseen, row.Stray, row.Lost, row.Duped, c.unseen, c.stray, c.lost, c.duped, row.Notes)
			}
			want := "PASS"
			if c.stray+c.lost+c.duped > 0 {
				want = "FAIL"
			}
			if got := row.jobTarget(); got != want {
				t.Errorf("job target %s, want %s", got, want)
			}
		})
	}
}
