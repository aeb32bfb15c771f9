package batchapi

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/jobs"
	"github.com/sluice-gw/sluice/internal/netguard"
	"github.com/sluice-gw/sluice/internal/openai"
)

// multipartSlack is what an upload body may carry beyond the file itself:
// boundaries, part headers and the purpose field.
const multipartSlack = 1 << 20

// maxPurposeBytes bounds the purpose field; the valid values are short.
const maxPurposeBytes = 256

// errMalformedUpload tags a failure to read the client's multipart body
// (bad framing, or the client went away): the client's fault, not ours.
var errMalformedUpload = errors.New("malformed multipart body")

// upload is what POST /v1/files received.
type upload struct {
	purpose     string
	havePurpose bool
	filename    string
	haveFile    bool
	spool       spool // the file part, spooled
	size        int64
	lineErrs    []jobs.BatchLineError
	// expiresAfter holds the expires_after[anchor] and
	// expires_after[seconds] fields (the SDKs send the object as these
	// two form fields), by field name.
	expiresAfter map[string]string
}

func (u *upload) close() {
	if u.spool != nil {
		u.spool.discard()
	}
}

// spool is where an upload's file part goes as it streams, to be read
// back when it is stored: a temporary file in TempDir (tempSpool), as a
// 200 MiB upload is never held in memory.
type spool interface {
	io.ReadWriteSeeker
	// discard closes the spool and frees what it holds.
	discard()
}

type tempSpool struct{ *os.File }

func (s tempSpool) discard() {
	s.Close()
	os.Remove(s.Name())
}

// newTempSpool is Handler.newSpool's default.
func (h *Handler) newTempSpool() (spool, error) {
	f, err := os.CreateTemp(h.tempDir, "sluice-upload-*.jsonl")
	if err != nil {
		return nil, err
	}
	return tempSpool{f}, nil
}

// uploadFile is POST /v1/files: multipart/form-data with "file" (a JSONL
// batch input, with a filename) and "purpose" ("batch"), in either order —
// the python SDK sends purpose first, the node SDK file first, which is
// why the file is spooled before purpose is known.
func (h *Handler) uploadFile(w http.ResponseWriter, r *http.Request, tenant string) {
	r.Body = http.MaxBytesReader(w, r.Body, h.maxFileBytes+multipartSlack)
	u, err := h.receiveUpload(r)
	defer u.close()
	if err != nil {
		if errors.Is(err, ErrLineMemory) {
			h.bodyMetrics.Refused(netguard.RefusedMemory)
		}
		h.fail(w, r, err, objFile, "")
		return
	}
	switch {
	case !u.havePurpose:
		err = missingParam("purpose")
	case u.purpose != "batch":
		err = &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_value", Param: "purpose",
			Message: "Invalid value for 'purpose': " + strconv.Quote(u.purpose) + "; this gateway only accepts 'batch'"}
	case !u.haveFile:
		err = missingParam("file")
	case len(u.lineErrs) > 0:
		err = lineErrors(u.lineErrs)
	}
	var lifetime time.Duration
	if err == nil && u.expiresAfter != nil {
		lifetime, err = uploadExpiresAfter(u.expiresAfter)
	}
	if err != nil {
		h.fail(w, r, err, objFile, "")
		return
	}
	created := h.now().Unix()
	var expires int64 // 0: the store's retention
	if lifetime > 0 {
		expires = created + int64(lifetime/time.Second)
	}
	if _, err := u.spool.Seek(0, io.SeekStart); err != nil {
		h.fail(w, r, fmt.Errorf("rewinding spooled upload: %w", err), objFile, "")
		return
	}
	f, err := h.svc.PutFile(r.Context(), jobs.File{
		Object:    "file",
		Bytes:     u.size,
		CreatedAt: created,
		ExpiresAt: expires,
		Filename:  u.filename,
		Purpose:   "batch",
		Status:    "processed",
		Tenant:    tenant,
	}, u.spool)
	if err != nil {
		h.fail(w, r, fmt.Errorf("storing upload: %w", err), objFile, "")
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// receiveUpload reads the multipart body, spooling and validating the file
// part as it streams. The returned upload is never nil and must be closed.
func (h *Handler) receiveUpload(r *http.Request) (*upload, error) {
	u := &upload{}
	mr, err := r.MultipartReader()
	if err != nil {
		return u, openai.NotMultipart("'file' and 'purpose'")
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return u, nil
		}
		if err != nil {
			return u, fmt.Errorf("%w: %w", errMalformedUpload, err)
		}
		body := clientReader{part}
		switch name := part.FormName(); name {
		case "purpose":
			if u.havePurpose {
				return u, duplicatePart("purpose")
			}
			v, err := readSmallField(body, "purpose")
			if err != nil {
				return u, err
			}
			u.purpose, u.havePurpose = v, true
		case anchorField, secondsField:
			if _, dup := u.expiresAfter[name]; dup {
				return u, duplicatePart(name)
			}
			v, err := readSmallField(body, name)
			if err != nil {
				return u, err
			}
			if u.expiresAfter == nil {
				u.expiresAfter = map[string]string{}
			}
			u.expiresAfter[name] = v
		case "file":
			if u.haveFile {
				return u, duplicatePart("file")
			}
			u.haveFile = true
			u.filename = part.FileName()
			if err := h.spoolFile(u, body); err != nil {
				return u, err
			}
		default:
			// The SDKs send nothing else: a field the gateway does not
			// take is refused by name, as OpenAI refuses it (and as
			// POST /v1/batches refuses an unknown JSON key), rather than
			// skipped: a client setting one learns it had no effect. Read
			// first (MaxBytesReader bounds it), so a body over the limit
			// is still the 413 it would be without the field.
			if _, err := io.Copy(io.Discard, body); err != nil {
				return u, err
			}
			return u, unknownParam(openai.Echo(name))
		}
		part.Close()
	}
}

// readSmallField reads a form field that is a short value (purpose, the
// expires_after fields), refusing one longer than maxPurposeBytes.
func readSmallField(body io.Reader, name string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(body, maxPurposeBytes+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxPurposeBytes {
		return "", &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "invalid_value",
			Param: name, Message: "Invalid value for '" + name + "': too long"}
	}
	return strings.TrimSpace(string(b)), nil
}

// spoolFile copies the file part to a temporary file, validating its lines
// on the way, and stops at h.maxFileBytes with errFileTooLarge.
func (h *Handler) spoolFile(u *upload, part io.Reader) error {
	sp, err := h.newSpool()
	if err != nil {
		return fmt.Errorf("spooling upload: %w", err)
	}
	f := &countedSpool{spool: sp, bound: h.spools}
	u.spool = f
	sw := &spoolWriter{f: f, max: h.maxFileBytes}
	tee := io.TeeReader(part, sw)
	_, lineErrs, err := ParseBatchInput(tee, ParseOptions{
		Endpoints:    h.endpoints,
		Models:       h.models,
		MaxRequests:  h.maxBatchRequests,
		MaxLineBytes: h.maxLineBytes,
		ValidateOnly: true,
		Memory:       h.bodyMem,
	})
	if err == nil {
		// Parsing stops early past MaxRequests; still read the part to
		// its end, so an oversized file is told 413 rather than 400.
		_, err = io.Copy(io.Discard, tee)
	}
	if err != nil {
		return err
	}
	u.size, u.lineErrs = sw.n, lineErrs
	return nil
}

// spoolWriter writes to f until more than max bytes come.
type spoolWriter struct {
	f   io.Writer
	max int64
	n   int64
}

func (s *spoolWriter) Write(p []byte) (int, error) {
	if s.n+int64(len(p)) > s.max {
		return 0, errFileTooLarge
	}
	n, err := s.f.Write(p)
	s.n += int64(n)
	if errors.Is(err, errSpoolFull) {
		return n, err
	}
	if err != nil {
		return n, fmt.Errorf("spooling upload: %w", err)
	}
	return n, nil
}

// clientReader tags read errors of the request body as the client's, so
// that they map to 400 (or 413, for MaxBytesReader's) instead of 500.
type clientReader struct{ r io.Reader }

func (c clientReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", errMalformedUpload, err)
	}
	return n, err
}

// getFile is GET /v1/files/{id}.
func (h *Handler) getFile(w http.ResponseWriter, r *http.Request, tenant, id string) {
	f, err := h.svc.File(r.Context(), tenant, id)
	if err != nil {
		h.fail(w, r, err, objFile, id)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// deleteFile is DELETE /v1/files/{id}.
func (h *Handler) deleteFile(w http.ResponseWriter, r *http.Request, tenant, id string) {
	if err := h.svc.DeleteFile(r.Context(), tenant, id); err != nil {
		h.fail(w, r, err, objFile, id)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}{id, "file", true})
}

// fileContent is GET /v1/files/{id}/content: the bytes, streamed.
//
// The reader checks the content against its size and digest before it
// hands out the last chunk (jobs.fileReader), so the first chunk is read
// before the status is sent: a file of one chunk (128 KiB, most batch
// outputs) that is damaged or missing in the store is an OpenAI 500 with
// the request id, not a 200. A fault found after the status cuts the
// response (http.ErrAbortHandler: the connection closed, or the HTTP/2
// stream reset), so no client takes a short body for the whole file.
func (h *Handler) fileContent(w http.ResponseWriter, r *http.Request, tenant, id string) {
	f, err := h.svc.File(r.Context(), tenant, id)
	if err != nil {
		h.fail(w, r, err, objFile, id)
		return
	}
	rc, err := h.svc.FileContent(r.Context(), tenant, id)
	if err != nil {
		h.fail(w, r, err, objFile, id)
		return
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, contentBuffer)
	if _, err := br.Peek(1); err != nil && err != io.EOF {
		h.fail(w, r, fmt.Errorf("reading file %s: %w", id, err), objFile, id)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	if f.Bytes > 0 {
		hd.Set("Content-Length", strconv.FormatInt(f.Bytes, 10))
	}
	if f.Filename != "" {
		hd.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Filename}))
	}
	w.WriteHeader(http.StatusOK)
	n, err := io.Copy(w, br)
	if err == nil && n == f.Bytes {
		return
	}
	if r.Context().Err() == nil {
		if err == nil {
			err = fmt.Errorf("the content has %d bytes, its file object %d", n, f.Bytes)
		}
		h.log.ErrorContext(r.Context(), "file download cut: the stored content cannot be sent whole", "file", id,
			"request_id", hd.Get("X-Request-Id"), "sent", n, "bytes", f.Bytes, "err", err)
	}
	panic(http.ErrAbortHandler)
}

// contentBuffer is what a download holds besides its reader's chunks:
// io.Copy's own buffer size.
const contentBuffer = 32 << 10

// missingParam is OpenAI's 400 for an absent required field.
// duplicatePart is the 400 of a form field sent twice: which one was
// meant is not for the gateway to guess (before, the last purpose won
// silently). The audio forms answer the same (openai.ParseMultipartChunks).
func duplicatePart(name string) *openai.Error {
	return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "duplicate_parameter",
		Param: name, Message: strconv.Quote(name) + " appears more than once in the request body"}
}

func missingParam(name string) *openai.Error {
	return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "missing_required_parameter",
		Param: name, Message: "Missing required parameter: '" + name + "'."}
}

// unknownParam is OpenAI's 400 for a parameter it does not take.
func unknownParam(name string) *openai.Error {
	return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "unknown_parameter",
		Param: name, Message: "Unknown parameter: '" + name + "'."}
}

// lineErrors is the 400 for an invalid batch input: the first few problems
// with their line numbers, the first one's code.
func lineErrors(errs []jobs.BatchLineError) *openai.Error {
	const shown = 3
	var sb strings.Builder
	sb.WriteString("The batch input file is invalid: ")
	for i, e := range errs[:min(len(errs), shown)] {
		if i > 0 {
			sb.WriteString("; ")
		}
		if e.Line > 0 {
			sb.WriteString("line " + strconv.Itoa(e.Line) + ": ")
		}
		sb.WriteString(e.Message)
	}
	if len(errs) > shown {
		sb.WriteString(" (" + strconv.Itoa(len(errs)-shown) + " more not shown)")
	}
	return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: errs[0].Code,
		Param: "file", Message: sb.String()}
}

// fileList is the body of GET /v1/files.
type fileList struct {
	Object  string       `json:"object"` // "list"
	Data    []*jobs.File `json:"data"`
	FirstID *string      `json:"first_id"`
	LastID  *string      `json:"last_id"`
	HasMore bool         `json:"has_more"`
}

// maxFileListLimit is OpenAI's cap on one page of GET /v1/files.
const maxFileListLimit = 10000

// listFiles is GET /v1/files: the tenant's files, newest first (order=asc
// for oldest first), optionally of one purpose, paged with after and limit.
func (h *Handler) listFiles(w http.ResponseWriter, r *http.Request, tenant string) {
	q := r.URL.Query()
	limit, err := listLimit(q, maxFileListLimit, maxFileListLimit)
	if err != nil {
		h.fail(w, r, err, objFile, "")
		return
	}
	order, err := listOrder(q)
	if err != nil {
		h.fail(w, r, err, objFile, "")
		return
	}
	files, err := h.svc.ListFiles(r.Context(), tenant, q.Get("purpose"))
	if err != nil {
		h.fail(w, r, fmt.Errorf("listing files: %w", err), objFile, "")
		return
	}
	if order == "asc" {
		slices.Reverse(files)
	}
	if after := q.Get("after"); after != "" {
		if files, err = h.filesAfter(r, tenant, files, after, order == "asc"); err != nil {
			h.fail(w, r, fmt.Errorf("listing files: %w", err), objFile, "")
			return
		}
	}
	page := fileList{Object: "list", Data: files, HasMore: len(files) > limit}
	if page.HasMore {
		page.Data = files[:limit]
	}
	if page.Data == nil {
		page.Data = []*jobs.File{}
	}
	if n := len(page.Data); n > 0 {
		page.FirstID, page.LastID = &page.Data[0].ID, &page.Data[n-1].ID
	}
	writeJSON(w, http.StatusOK, page)
}

// filesAfter is the part of files (sorted in the list's order) that comes
// after the cursor. A cursor naming a file that is gone (deleted, expired;
// its metadata stays until retention ends) still marks its place, by its
// created_at and id, as a batch id does in GET /v1/batches: a client
// paging while files go away continues where it was instead of getting a
// 404. A cursor naming no file of the tenant answers an empty page. Why
// not a 404: no list operation in OpenAI's spec (openai-openapi) has an
// answer but 200, and the two lists now answer alike.
func (h *Handler) filesAfter(r *http.Request, tenant string, files []*jobs.File, after string, asc bool) ([]*jobs.File, error) {
	if i := slices.IndexFunc(files, func(f *jobs.File) bool { return f.ID == after }); i >= 0 {
		return files[i+1:], nil
	}
	c, err := h.svc.FileCursor(r.Context(), tenant, after)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// comesAfter reports whether f follows the cursor in the list's order
	// (newest first: smaller created_at, then smaller id).
	comesAfter := func(f *jobs.File) bool {
		d := cmp.Or(cmp.Compare(f.CreatedAt, c.CreatedAt), strings.Compare(f.ID, c.ID))
		if asc {
			return d > 0
		}
		return d < 0
	}
	return files[min(len(files), max(0, slices.IndexFunc(files, comesAfter))):], nil
}
