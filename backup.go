package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// GET /v1/snapshot: a backup, streamed.
//
// A backup is the kvstore's part of a raft snapshot: the very file the
// snapshotter writes (frozenKV.WriteTo through diskStorage.saveKV), in the
// format of kvsnapshot.go with its own CRC-32C at the end. So there is no
// second encoder, and taking one costs what a snapshot costs: the apply loop
// holds the map still for an instant (kvstore.freeze) and goes on applying
// while the writer copies it to disk in the background; writes never wait
// for it. A raft snapshot is taken only if none covers the request yet, and
// concurrent backups share it.
//
// The file is on disk before the first byte leaves, so a slow client holds an
// open file and nothing of the store: not its lock, not a frozen map, not
// memory beyond a copy buffer. A client that stops reading for
// backupStallTimeout is cut off, so none holds the file (which retention may
// have unlinked) for ever.
//
// The backup is linearizable: it starts with a read barrier (ReadIndex, then
// apply through it), and the snapshot it streams is at least that new, so it
// holds every write acknowledged anywhere before the request.

const (
	// backupSnapshotTimeout bounds the wait for the snapshot a backup needs:
	// writing a large state to disk takes longer than --request-timeout.
	backupSnapshotTimeout = 2 * time.Minute
	// backupChunkBytes is what is written to the client between deadlines.
	backupChunkBytes = 64 << 10
)

// backupRequest asks the Ready loop for a snapshot at atLeast or later; the
// loop sends its index on answer (buffered, so the loop never waits).
type backupRequest struct {
	atLeast uint64
	answer  chan uint64
}

// backupRequests are the backups waiting for a snapshot. The Ready loop owns
// waiting; requests carries new ones to it.
type backupRequests struct {
	requests chan backupRequest
	waiting  []backupRequest
}

// takeBackupRequest, in the Ready loop, answers req at once if the newest
// snapshot covers it, and otherwise starts one (unless one is being written:
// answerBackups then starts the next).
func (rn *raftNode) takeBackupRequest(req backupRequest) error {
	if rn.snaps.index.Load() >= req.atLeast {
		req.answer <- rn.snaps.index.Load()
		return nil
	}
	rn.snaps.backups.waiting = append(rn.snaps.backups.waiting, req)
	rn.snaps.wanted = true
	return rn.maybeSnapshot()
}

// answerBackups, in the Ready loop once a snapshot is done, answers the
// backups it (or a snapshot installed from the leader meanwhile) covers, and
// starts another for those it does not: they asked after it had started.
func (rn *raftNode) answerBackups() error {
	b := &rn.snaps.backups
	if len(b.waiting) == 0 {
		return nil
	}
	index := rn.snaps.index.Load()
	rest := b.waiting[:0]
	for _, req := range b.waiting {
		if index >= req.atLeast {
			req.answer <- index
		} else {
			rest = append(rest, req)
		}
	}
	clear(b.waiting[len(rest):])
	b.waiting = rest
	if len(rest) == 0 {
		return nil
	}
	rn.snaps.wanted = true
	return rn.maybeSnapshot()
}

// snapshotFile returns the kvstore's part of a snapshot at atLeast or later,
// opened, its size and its index.
func (rn *raftNode) snapshotFile(ctx context.Context, atLeast uint64) (io.ReadCloser, int64, uint64, error) {
	for try := 0; ; try++ {
		req := backupRequest{atLeast: atLeast, answer: make(chan uint64, 1)}
		var index uint64
		select {
		case rn.snaps.backups.requests <- req:
		case <-ctx.Done():
			return nil, 0, 0, errBackupTimeout
		case <-rn.life.stop:
			return nil, 0, 0, errStopped
		case <-rn.life.done: // the loop ended by itself
			return nil, 0, 0, errStopped
		}
		select {
		case index = <-req.answer:
		case <-ctx.Done():
			return nil, 0, 0, errBackupTimeout
		case <-rn.life.stop:
			return nil, 0, 0, errStopped
		case <-rn.life.done: // the loop ended by itself
			return nil, 0, 0, errStopped
		}
		f, size, err := rn.snaps.log.disk.openKV(index)
		// Retention deletes a data file once enough newer snapshots exist;
		// one of those covers the request too.
		if errors.Is(err, fs.ErrNotExist) && try < 3 {
			continue
		}
		return f, size, index, err
	}
}

// backupStallTimeout is how long a backup client may stop reading (a
// variable for the tests).
var backupStallTimeout = 30 * time.Second

var errBackupTimeout = errors.New("the snapshot for the backup was not written in time; retry later")

// snapshotSource is what a backup needs of the raft node (*raftNode).
type snapshotSource interface {
	snapshotFile(ctx context.Context, atLeast uint64) (io.ReadCloser, int64, uint64, error)
}

// backup answers GET /v1/snapshot: the backup as application/octet-stream,
// with its store revision (X-Revision), the log index of the snapshot it is
// (X-Raft-Index) and the SHA-256 of the body (X-Checksum-Sha256, hex: what
// sha256sum prints), all known before the body is sent.
func (h *httpAPI) backup(w http.ResponseWriter, r *http.Request) error {
	src, ok := h.svc.node.(snapshotSource)
	if !ok {
		return apiErr(http.StatusNotImplemented, "this member cannot take backups")
	}
	ctx, cancel := h.waitContext(r)
	err := h.svc.catchUpForRead(ctx)
	cancel()
	if err != nil {
		return err
	}
	atLeast := h.svc.State().index // applied through the read index
	ctx, cancel = context.WithTimeout(r.Context(), backupSnapshotTimeout)
	defer cancel()
	f, size, index, err := src.snapshotFile(ctx, atLeast)
	if err != nil {
		if errors.Is(err, errBackupTimeout) || errors.Is(err, errStopped) {
			return apiErr(http.StatusServiceUnavailable, err.Error())
		}
		return err
	}
	defer f.Close()
	seeker, ok := f.(io.ReadSeeker)
	if !ok {
		return errors.New("snapshot data file is not seekable")
	}
	// Read it through once, as a member checks a snapshot from its leader:
	// a damaged file is never sent as a backup, and the checksum and
	// revision go in the headers.
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(backupSnapshotTimeout))
	revision, sum, err := inspectSnapshotFile(seeker, size)
	if err != nil {
		return fmt.Errorf("the snapshot at index %d: %w", index, err)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.FormatInt(size, 10))
	hd.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="raftexample-%d.backup"`, revision))
	hd.Set("X-Raft-Index", strconv.FormatUint(index, 10))
	hd.Set("X-Checksum-Sha256", hex.EncodeToString(sum))
	setRevision(w, revision)
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, backupChunkBytes)
	for {
		n, rerr := seeker.Read(buf)
		if n > 0 {
			rc.SetWriteDeadline(time.Now().Add(backupStallTimeout))
			if _, err := w.Write(buf[:n]); err != nil {
				return nil // the client went away, or stalled
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			// The status is sent: cutting the body short (Content-Length)
			// is how the client learns of it.
			h.lg.Warn("reading the snapshot file for a backup failed", zap.Uint64("index", index), zap.Error(rerr))
			panic(http.ErrAbortHandler)
		}
	}
}

// inspectSnapshotFile checks f with verifyKVSnapshot, the check a member
// makes of a snapshot from its leader, and returns its store revision and
// SHA-256, leaving f at its start.
func inspectSnapshotFile(f io.ReadSeeker, size int64) (revision uint64, sum []byte, err error) {
	hash := sha256.New()
	if err := verifyKVSnapshot(io.TeeReader(f, hash), size); err != nil {
		return 0, nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, nil, err
	}
	sr, err := readKVSnapshot(f, size) // the header only
	if err != nil {
		return 0, nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, nil, err
	}
	return sr.revision, hash.Sum(nil), nil
}
