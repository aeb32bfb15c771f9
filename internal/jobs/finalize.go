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
)

// finalize writes the batch's output and error files and makes it
// target (completed, cancelled or expired); it reports whether the batch
// is done. Any number of trackers may run it, one resuming after a crash
// too, and they agree:
//   - the target is recorded (compare-and-swap) before any file is
//     written, and a resumed finalization keeps it;
//   - one process at a time holds the claim on the files (fileclaim.go),
//     and only it writes them; the others wait for it to finish, or for
//     its lease to end;
//   - the files' ids are derived from the batch id, and their content and
//     metadata from records that no longer change (terminal job records,
//     the time finalization began): a holder that takes over from one
//     that died writes what it would have;
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
	outIdx, errIdx := a.lineIndexes()
	b, claimed, err := a.startFinalization(ctx, target, len(outIdx)+len(errIdx) > 0)
	if err != nil {
		return a.failed("starting finalization", err)
	}
	if batchTerminal(b.Batch.Status) {
		return a.announce(ctx, b) && a.forget(ctx)
	}
	var out, errf *string
	if len(outIdx)+len(errIdx) > 0 {
		if !claimed {
			// Another process writes the files: a later evaluation
			// finds the batch finished, or its writer's lease ended.
			s.stats.fileClaimWaits.Add(1)
			s.log.Debug("result files being written by another process", "batch", a.id, "writer", b.Writer.Owner)
			return false
		}
		out, errf, err = a.writeFiles(ctx, b, outIdx, errIdx)
		if err != nil {
			a.releaseClaim(ctx)
			return a.failed("writing result files", err)
		}
	}
	counts, usage := a.counts(), a.usage()
	done, _, err := s.updateBatch(ctx, a.key, func(r *batchRecord) error {
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
		r.Batch.RequestCounts, r.Batch.Usage = counts, usage
		r.Writer = nil
		return nil
	})
	if err != nil {
		return a.failed("completing batch", err)
	}
	return a.announce(ctx, done) && a.forget(ctx)
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

// lineIndexes are the indexes of the jobs with a line in the output file
// (2xx answers) and in the error file (every other outcome worth a
// line), in input order.
func (a *actor) lineIndexes() (out, errs []int) {
	for i, st := range a.jobs {
		switch st.kind {
		case lineOutput:
			out = append(out, i)
		case lineError:
			errs = append(errs, i)
		}
	}
	slices.Sort(out)
	slices.Sort(errs)
	return out, errs
}

// writeFiles writes the output and error files, each only if it has a
// line, and returns their ids. The caller holds the claim on them.
func (a *actor) writeFiles(ctx context.Context, b *batchRecord, outIdx, errIdx []int) (out, errf *string, err error) {
	claim := a.keepClaim()
	for _, f := range []struct {
		kind string
		idx  []int
		id   **string
	}{{"output", outIdx, &out}, {"error", errIdx, &errf}} {
		if len(f.idx) == 0 {
			continue
		}
		id := batchFileID(b.Batch.ID, f.kind)
		if err := a.writeFile(ctx, b, claim, id, b.Batch.ID+"_"+f.kind+".jsonl", f.idx); err != nil {
			return nil, nil, err
		}
		*f.id = &id
	}
	return out, errf, nil
}

// writeFile stores one result file, unless a holder of the claim before
// this one stored it and died before recording the batch finished.
func (a *actor) writeFile(ctx context.Context, b *batchRecord, claim *claimKeeper, id, name string, idx []int) error {
	s := a.s
	if info, err := s.files.GetInfo(ctx, id); err == nil && info.Metadata[metaBatch] == b.Batch.ID {
		return nil // stored whole (the metadata is written last); the content would be the same
	}
	// The time finalization began, not now: every writer's file is the
	// same, metadata included.
	created := b.FilesAt
	if created == 0 { // a finalization begun before files_at was recorded
		created = s.now().Unix()
	}
	var asked int64 // output_expires_after, anchored at the file's creation as OpenAI's is
	if b.OutputExpiresAfter > 0 {
		asked = created + b.OutputExpiresAfter
	}
	f := &File{ID: id, CreatedAt: created, ExpiresAt: s.fileExpiry(created, asked),
		Filename: name, Purpose: "batch_output", Tenant: b.Tenant}
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() {
		err := a.writeLines(ctx, pw, idx, claim)
		if err == nil && s.o.beforeFileCommit != nil {
			s.o.beforeFileCommit(ctx)
		}
		if err == nil {
			// The fence: Put commits the file when its reader ends,
			// which it does only once the claim is confirmed.
			err = claim.keep(ctx, true)
		}
		pw.CloseWithError(err)
	})
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
// keeps memory flat however large the batch. It keeps the claim as it
// goes, and stops once it is lost.
func (a *actor) writeLines(ctx context.Context, w io.Writer, idx []int, claim *claimKeeper) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, i := range idx {
		if err := claim.keep(ctx, false); err != nil {
			return err
		}
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
