package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Files live in the object store under their id; what File returns is
// kept in the object's metadata, so it is answered without the content.
const (
	metaTenant   = "tenant"
	metaPurpose  = "purpose"
	metaFilename = "filename"
	metaCreated  = "created_at"
	metaExpires  = "expires_at"
	metaBatch    = "batch" // set on a batch's output and error files
)

func fileMeta(f *File, batchID string) jetstream.ObjectMeta {
	m := map[string]string{
		metaTenant:   f.Tenant,
		metaPurpose:  f.Purpose,
		metaFilename: f.Filename,
		metaCreated:  strconv.FormatInt(f.CreatedAt, 10),
		metaExpires:  strconv.FormatInt(f.ExpiresAt, 10),
	}
	if batchID != "" {
		m[metaBatch] = batchID
	}
	return jetstream.ObjectMeta{Name: f.ID, Metadata: m}
}

// fileFromInfo reads a file back from its object's info, as the server
// answers it. A size past int64 (no object is that big; a server's
// answer read wrong) is read as the most, not as a negative bytes;
// created_at or expires_at that is not a number reads 0 (none).
func fileFromInfo(info *jetstream.ObjectInfo) *File {
	m := info.Metadata
	created, _ := strconv.ParseInt(m[metaCreated], 10, 64)
	expires, _ := strconv.ParseInt(m[metaExpires], 10, 64)
	return &File{
		ID: info.Name, Object: "file", Bytes: int64(min(info.Size, math.MaxInt64)), CreatedAt: created, ExpiresAt: expires,
		Filename: m[metaFilename], Purpose: m[metaPurpose], Status: "processed", Tenant: m[metaTenant],
	}
}

// PutFile stores a file. f's ID, Bytes, Object and Status are set here;
// CreatedAt defaults to now. ExpiresAt, when set (the upload's
// expires_after), is kept if it comes before CreatedAt + Retention, the
// default and the bound: the store keeps nothing longer.
func (s *Store) PutFile(ctx context.Context, f File, r io.Reader) (_ *File, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = done(err) }()
	if err := s.admitNew(ctx); err != nil {
		return nil, err
	}
	id, err := s.newID("file-", 12)
	if err != nil {
		return nil, err
	}
	f.ID, f.Object, f.Status = id, "file", "processed"
	if f.CreatedAt == 0 {
		f.CreatedAt = s.now().Unix()
	}
	f.ExpiresAt = s.fileExpiry(f.CreatedAt, f.ExpiresAt)
	info, err := s.files.Put(ctx, fileMeta(&f, ""), &limitReader{r: r, left: s.o.MaxFileBytes})
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("jobs: file exceeds %d bytes: %w", s.o.MaxFileBytes, ErrTooLarge)
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: storing file: %w", s.storeFull(err))
	}
	f.Bytes = int64(info.Size)
	s.noteStored(f.Bytes)
	return &f, nil
}

// fileExpiry is when a file created at created (Unix seconds) expires:
// at asked if it is set and comes first, else when retention ends.
func (s *Store) fileExpiry(created, asked int64) int64 {
	kept := created + int64(s.o.Retention/time.Second)
	if asked > 0 && asked < kept {
		return asked
	}
	return kept
}

// expired reports whether f is past its expires_at: it is gone for
// clients at once (404), and from storage at the next sweep
// (sweepExpiredFiles).
func (s *Store) expired(f *File) bool {
	return f.ExpiresAt > 0 && s.now().Unix() >= f.ExpiresAt
}

// File returns the tenant's file; an expired one is ErrNotFound.
func (s *Store) File(ctx context.Context, tenant, id string) (_ *File, err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = done(err) }()
	if !validToken.MatchString(id) {
		return nil, ErrNotFound
	}
	info, err := s.files.GetInfo(ctx, id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: reading file %s: %w", id, err)
	}
	f := fileFromInfo(info)
	if f.Tenant != tenant || s.expired(f) {
		return nil, ErrNotFound
	}
	return f, nil
}

// FileCursor returns the tenant's file as it was last stored, also when
// it is deleted or expired (the object store keeps a deleted file's
// metadata until retention ends): a list's after= naming a file that went
// away between two pages still marks a place in the list.
func (s *Store) FileCursor(ctx context.Context, tenant, id string) (*File, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if !validToken.MatchString(id) {
		return nil, ErrNotFound
	}
	info, err := s.files.GetInfo(ctx, id, jetstream.GetObjectInfoShowDeleted())
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: reading file %s: %w", id, err)
	}
	f := fileFromInfo(info)
	if f.Tenant != tenant {
		return nil, ErrNotFound
	}
	return f, nil
}

// FileContent opens the tenant's file for reading; ctx must last as long
// as the reading does, and ending it ends the read. Nothing else bounds
// the whole read; each chunk must come within Options.FileReadIdle. The
// reader fails rather than hand out content short of the file's size or
// other than its digest, and survives the file being written again with
// the same content (a batch finalized twice); see fileReader.
//
// The read is bound to the NATS connection (onConn) until the reader is
// closed: a drop ends a read waiting for its next chunk at once.
func (s *Store) FileContent(ctx context.Context, tenant, id string) (io.ReadCloser, error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.File(ctx, tenant, id); err != nil {
		return nil, done(err)
	}
	res, err := s.openFileReader(ctx, id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, done(ErrNotFound)
	}
	if err != nil {
		return nil, done(fmt.Errorf("jobs: opening file %s: %w", id, err))
	}
	return &boundReader{ReadCloser: res, done: done}, nil
}

// DeleteFile removes the tenant's file.
func (s *Store) DeleteFile(ctx context.Context, tenant, id string) (err error) {
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return err
	}
	defer func() { err = done(err) }()
	if _, err := s.File(ctx, tenant, id); err != nil {
		return err
	}
	return s.deleteFile(ctx, id)
}

// deleteFile removes a file's content, leaving its metadata marked
// deleted (a list cursor, until retention ends).
func (s *Store) deleteFile(ctx context.Context, id string) error {
	err := s.files.Delete(ctx, id)
	if isStoreFullErr(err) {
		// At the hard limit the delete marker cannot be written: free
		// the content first, then mark.
		if err = s.purgeFileChunks(ctx, id); err == nil {
			err = s.files.Delete(ctx, id)
		}
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("jobs: deleting file %s: %w", id, err)
	}
	s.forgetUsage() // the space is free now, not in usageTTL
	return nil
}

// limitReader fails with ErrTooLarge past left bytes, which makes the
// object store drop what it stored so far.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	return n, err
}

// ListFiles returns the tenant's files, newest first, only those of purpose
// when it is set. It reads every file's metadata (the object store keeps
// no index by tenant), so at most MaxFileListings run at once: past it,
// ErrTooManyListings.
func (s *Store) ListFiles(ctx context.Context, tenant, purpose string) (_ []*File, err error) {
	if !s.listings.enter() {
		return nil, ErrTooManyListings
	}
	defer s.listings.leave()
	ctx, done, err := s.onConn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { err = done(err) }()
	infos, err := s.files.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: listing files: %w", err)
	}
	var out []*File
	for _, info := range infos {
		if info.Deleted {
			continue
		}
		if f := fileFromInfo(info); f.Tenant == tenant && (purpose == "" || f.Purpose == purpose) && !s.expired(f) {
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, func(a, b *File) int {
		if a.CreatedAt != b.CreatedAt {
			return cmp.Compare(b.CreatedAt, a.CreatedAt)
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}
