package jobs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluice-gw/sluice/internal/telemetry"
)

// A KV stream's message block with a record damaged in place between two
// runs (5,000 random bytes over the last 6 KB of KV_sluice_jobs' block:
// a failing disk, a bad copy) is not seen by nats-server at start while
// the block's length matches its index.db; it finds it when it loads the
// block ("indexCacheBuf corrupt record state"), and the next write to a
// key whose history reaches into it makes it loop in fileStore.StoreMsg ->
// removeMsgViaLimits -> firstSeqForSubj under the stream's lock
// (nats-server v2.15.2 and v2.15.3, measured): every job, batch and file
// call waits, one core busy (docs/RELIABILITY.md, kvwedge). A block cut
// at the same record and without its index.db is rebuilt by nats-server
// from what is left, as a cut block always was, and served normally
// (measured: no loop, jobs run, the loss reported).
//
// So before nats-server starts (at the process's start and at a disk
// fault's recovery: restartServer), each KV stream's blocks are walked record
// by record with the checks nats-server's indexCacheBuf makes; a block
// with a record that fails them is cut there (the records from it on were
// unreadable to nats-server anyway), its original and the stream's
// index.db kept under <storeDir>/damaged-<time>/<stream>/msgs/, and the
// damage reported with the start's (same ERROR line, metric, /status).
// Only the record framing is checked, not the records' hashes: a record
// changed without changing its length stays unnoticed, as it is by
// nats-server (nats-io/nats-server#8632).

// The record layout of nats-server's file store (filestore.go,
// writeMsgRecord): length (4, its top bit: has headers), sequence (8),
// timestamp (8), subject length (2), subject, headers' length (4) and
// headers when flagged, payload, hash (8).
const (
	blockRecordHeader = 22
	blockRecordHash   = 8
	blockHeadersBit   = 1 << 31
	blockRecordMax    = 32 << 20 // nats-server's rlBadThresh
	blockReadChunk    = 1 << 20
)

// firstBadRecord is the offset of the first record of the block at path
// that nats-server's indexCacheBuf would refuse, or -1 if none; size is
// the block's length.
func firstBadRecord(path string) (bad, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return -1, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return -1, 0, err
	}
	size = st.Size()
	// Read in large sequential chunks, the bodies skipped in the buffer: a
	// read per record (ReadAt of each header) took 0.41-0.51 s over 100,000
	// job-sized records, a start's delay growing with the store; chunked,
	// 19-26 ms (BenchmarkFirstBadRecord100k).
	br := bufio.NewReaderSize(f, blockReadChunk)
	var hdr [blockRecordHeader]byte
	for off := int64(0); off < size; {
		if off+blockRecordHeader > size {
			return off, size, nil
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return off, size, nil // shorter than it was: cut there
			}
			return -1, size, err
		}
		rl := binary.LittleEndian.Uint32(hdr[0:])
		shlen := int64(binary.LittleEndian.Uint16(hdr[20:]))
		if rl&blockHeadersBit != 0 {
			shlen += 4
		}
		rl &^= blockHeadersBit
		dlen := int64(rl) - blockRecordHeader
		if dlen < 0 || shlen > dlen-blockRecordHash || off+int64(rl) > size || rl > blockRecordMax {
			return off, size, nil
		}
		if _, err := br.Discard(int(rl) - blockRecordHeader); err != nil {
			if errors.Is(err, io.EOF) {
				return off, size, nil
			}
			return -1, size, err
		}
		off += int64(rl)
	}
	return -1, size, nil
}

// cutDamagedBlocks walks every KV stream's blocks under storeDir (see
// above), cuts each at its first bad record, and returns the streams cut
// with what was done; stamp names the directory the originals go to.
func cutDamagedBlocks(storeDir string, streams []string, stamp string) (map[string]string, error) {
	cut := map[string]string{}
	var errs []error
	for _, st := range streams {
		if !strings.HasPrefix(st, "KV_") {
			continue
		}
		msgs := filepath.Join(streamsDir(storeDir), st, "msgs")
		blocks, _ := filepath.Glob(filepath.Join(msgs, "*.blk"))
		slices.Sort(blocks)
		var done []string
		for _, blk := range blocks {
			bad, size, err := firstBadRecord(blk)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", blk, err))
				continue
			}
			if bad < 0 {
				continue
			}
			kept := filepath.Join(storeDir, "damaged-"+stamp, st, "msgs")
			if err := keepBlockAndCut(blk, kept, bad); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", blk, err))
				continue
			}
			done = append(done, fmt.Sprintf("block %s unreadable from byte %d of %d: cut there (its original kept at %s)",
				filepath.Base(blk), bad, size, filepath.Join(kept, filepath.Base(blk))))
		}
		if len(done) == 0 {
			continue
		}
		// Without its index, nats-server rebuilds the stream's state
		// from the blocks as they now are.
		idx := filepath.Join(msgs, "index.db")
		kept := filepath.Join(storeDir, "damaged-"+stamp, st, "msgs", "index.db")
		if err := os.Rename(idx, kept); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("%s: %w", idx, err))
		}
		cut[st] = strings.Join(done, "; ") + "; the stream rebuilt from what is left"
	}
	return cut, errors.Join(errs...)
}

// keepBlockAndCut copies the block at blk into dir, then cuts it at off.
func keepBlockAndCut(blk, dir string, off int64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	in, err := os.Open(blk)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(filepath.Join(dir, filepath.Base(blk)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Truncate(blk, off)
}

// cutDamagedKVBlocks is beforeStart's step for the blocks (above): the
// streams cut are reported as the start's damage, their count trusted
// (the audit compares it with the last clean stop's).
func (e *Embedded) cutDamagedKVBlocks(now time.Time) {
	a := &e.audit
	cut, err := cutDamagedBlocks(e.dir, a.onDisk, now.UTC().Format("20060102T150405Z"))
	if err != nil {
		e.log.Warn("job store: checking its KV streams' blocks", "data_dir", e.dir, "error", telemetry.FileCause(err), "detail", telemetry.Clip(err.Error()))
	}
	for _, st := range slices.Sorted(func(yield func(string) bool) {
		for n := range cut {
			if !yield(n) {
				return
			}
		}
	}) {
		a.noIndex[st] = true
		a.skipped = appendProblem(a.skipped, st, cut[st])
	}
}
