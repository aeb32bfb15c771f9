package jobs

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// finalize writes the batch's output and error files and makes it
// target (completed, cancelled or expired); it reports whether the batch
// is done. It is idempotent, so that two trackers, or one resuming after a
// crash, agree:
//   - the target is recorded (compare-and-swap) before any file is
//     written, and a resumed finalization keeps it;
//   - the files' ids are derived from the batch id, and their content
//     from job records that, being terminal, no longer change: writing a
//     file twice stores the same object under the same id;
//   - the final compare-and-swap happens once; a loser finds the batch
//     terminal and stops.
func (a *actor) finalize(ctx context.Context, target string) bool {
	s := a.s
	if !a.allTerminal() {
		return false // not ready yet: the watch is still catching up
	}
	if target == "" {
		target = batchCompleted
	}
	now := s.now().Unix()
	b, _, err := s.updateBatch(ctx, a.key, func(r *batchRecord) error {
		if batchTerminal(r.Batch.Status) || r.Target != "" {
			return errNoChange
		}
		r.Target = target
		if target == batchCompleted {
			r.Batch.Status = batchFinalizing
			r.Batch.FinalizingAt = ptr(now)
		}
		return nil
	})
	if err != nil {
		return a.failed("starting finalization", err)
	}
	if batchTerminal(b.Batch.Status) {
		return a.forget(ctx)
	}
	out, errf, err := a.writeFiles(ctx, b)
	if err != nil {
		return a.failed("writing result files", err)
	}
	counts := a.counts()
	_, _, err = s.updateBatch(ctx, a.key, func(r *batchRecord) error {
		if batchTerminal(r.Batch.Status) {
			return errNoChange
		}
		at := ptr(s.now().Unix())
		r.Batch.Status = r.Target
		switch r.Target {
		case batchCompleted:
			r.Batch.CompletedAt = at
		case batchCancelled:
			r.Batch.CancelledAt = at
		case batchExpired:
			r.Batch.ExpiredAt = at
		}
		r.Batch.OutputFileID, r.Batch.ErrorFileID = out, errf
		r.Batch.RequestCounts = counts
		return nil
	})
	if err != nil {
		return a.failed("completing batch", err)
	}
	return a.forget(ctx)
}

func (a *actor) failed(what string, err error) bool {
	if !errors.Is(err, context.Canceled) {
		a.s.log.Warn(what, "batch", a.id, "err", err)
	}
	return false // the next evaluation resumes
}

// batchFileID is the id of a batch's output or error file: derived, not
// random, so every finalization of the batch names the same file.
func batchFileID(batchID, kind string) string {
	h := sha256.Sum256([]byte(batchID + "/" + kind))
	return "file-" + hex.EncodeToString(h[:12])
}

// writeFiles writes the output file (2xx answers) and the error file
// (every other outcome worth a line), each only if it has a line, and
// returns their ids.
func (a *actor) writeFiles(ctx context.Context, b *batchRecord) (out, errf *string, err error) {
	var outIdx, errIdx []int
	for i, st := range a.jobs {
		switch st.kind {
		case lineOutput:
			outIdx = append(outIdx, i)
		case lineError:
			errIdx = append(errIdx, i)
		}
	}
	for _, f := range []struct {
		kind string
		idx  []int
		id   **string
	}{{"output", outIdx, &out}, {"error", errIdx, &errf}} {
		if len(f.idx) == 0 {
			continue
		}
		slices.Sort(f.idx) // input order
		id := batchFileID(b.Batch.ID, f.kind)
		if err := a.writeFile(ctx, b, id, b.Batch.ID+"_"+f.kind+".jsonl", f.idx); err != nil {
			return nil, nil, err
		}
		*f.id = &id
	}
	return out, errf, nil
}

func (a *actor) writeFile(ctx context.Context, b *batchRecord, id, name string, idx []int) error {
	s := a.s
	if info, err := s.files.GetInfo(ctx, id); err == nil && info.Metadata[metaBatch] == b.Batch.ID {
		return nil // an earlier finalization wrote it; the content would be the same
	}
	created := s.now().Unix()
	f := &File{ID: id, CreatedAt: created, ExpiresAt: created + int64(s.o.Retention/time.Second),
		Filename: name, Purpose: "batch_output", Tenant: b.Tenant}
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() { pw.CloseWithError(a.writeLines(ctx, pw, idx)) })
	_, err := s.files.Put(ctx, fileMeta(f, b.Batch.ID), pr)
	pr.CloseWithError(io.ErrClosedPipe) // stops writeLines if Put gave up
	wg.Wait()
	if err != nil {
		return fmt.Errorf("storing %s: %w", name, err)
	}
	return nil
}

// resultLine is one line of a batch output or error file (OpenAI's shape).
type resultLine struct {
	ID       string        `json:"id"`
	CustomID string        `json:"custom_id"`
	Response *lineResponse `json:"response"`
	Error    *JobError     `json:"error"`
}

type lineResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

// writeLines writes the lines of the jobs at idx, reading each record:
// records of a finished batch are immutable, and reading one at a time
// keeps memory flat however large the batch.
func (a *actor) writeLines(ctx context.Context, w io.Writer, idx []int) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, i := range idx {
		r, _, err := a.s.getJob(ctx, batchJobKey(a.id, i))
		if err != nil {
			return err
		}
		line := resultLine{ID: "batch_req_" + r.Job.ID, CustomID: r.Job.CustomID}
		if res := r.Job.Result; res != nil {
			body := res.Body
			if !json.Valid(body) {
				body = json.RawMessage("null")
			}
			line.Response = &lineResponse{StatusCode: res.StatusCode, RequestID: res.RequestID, Body: body}
		} else {
			line.Error = r.Job.Error
			if line.Error == nil {
				line.Error = &JobError{Code: "unknown", Message: "the request ended without an answer"}
			}
		}
		if err := enc.Encode(&line); err != nil { // Encode ends each line with \n
			return err
		}
	}
	return bw.Flush()
}
