package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// raftexample --restore FILE: seeding a member of a new cluster from a backup
// (GET /v1/snapshot), as etcd's `snapshot restore` does. It writes the
// member's data directory and exits; the member is then started as usual,
// without --restore. Every member of the new cluster is restored from the
// same file, each with its own --id and the same --cluster.
//
// The data directory it writes is the one a member would have after taking
// a snapshot of the backup's state at log index restoredIndex, term
// restoredTerm, with the members of --cluster as its configuration and
// nothing after it in the log: the state machine loads it at start the way
// it loads any snapshot (decodeKVSnapshot), with its keys, their revisions
// and the store's revision; watch history starts at that revision. Raft's
// log starts afresh. The window of applied command names (dedup.go) comes
// along too: the new members' request ids start at random points
// (requestIDs), so no new command is taken for one of the old ones.
//
// The new cluster's id is derived from --cluster and --cluster-token as any
// new cluster's, with the backup's SHA-256 mixed in: members restored from
// different backups, or a member started empty with the same flags, are
// refused by the others (412) instead of joining with another state.

const (
	restoredIndex = 1
	restoredTerm  = 1
)

// errRestoreRefused marks the reasons --restore refuses to seed a data
// directory.
var errRestoreRefused = errors.New("refusing to restore")

// restoreBackup seeds member o.id's data directory from the backup o.restore
// and reports what it restored.
func restoreBackup(lg *zap.Logger, o options) (string, error) {
	urls := strings.Split(o.cluster, ",")
	if o.id == 0 || o.id > uint64(len(urls)) {
		return "", fmt.Errorf("--id %d has no entry in --cluster (%d URLs)", o.id, len(urls))
	}
	for i, u := range urls {
		var err error
		if urls[i], err = parsePeerURL(u); err != nil {
			return "", fmt.Errorf("--cluster: %w", err)
		}
	}
	// As run names them.
	name := "raftexample-" + strconv.FormatUint(o.id, 10)
	waldir, snapdir := filepath.Join(o.dataDir, name), filepath.Join(o.dataDir, name+"-snap")
	for _, dir := range []string{waldir, snapdir} {
		if ok, err := isDir(dir); err != nil || ok {
			if err == nil {
				err = fmt.Errorf("%w: %s already holds member %d's data; restore into a new --data-dir (or delete it, if that member's data is no longer wanted)", errRestoreRefused, dir, o.id)
			}
			return "", err
		}
	}

	f, err := os.Open(o.restore)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	// Read it through as a member reads the snapshot it starts from, so a
	// file restored here is one every member will load.
	hash := sha256.New()
	kv, err := decodeKVSnapshot(io.TeeReader(f, hash), st.Size())
	if err != nil {
		return "", damagedBackup(o.restore, err)
	}
	sum := hex.EncodeToString(hash.Sum(nil))
	clusterID := deriveClusterID(urls, o.clusterToken+"\x00restored from "+sum)

	// Everything is written under a name of its own and moved into place
	// at the end: see seedDataDir.
	staging := filepath.Join(o.dataDir, "."+name+"-restoring")
	if err := os.RemoveAll(staging); err != nil { // left by an interrupted restore
		return "", err
	}
	if err := seedDataDir(lg, o, staging, f, urls, clusterID); err != nil {
		return "", err
	}
	d := &diskStorage{lg: lg, noFsync: o.unsafeNoFsync}
	// Nothing is under the member's own names until it is complete. The
	// snapshot directory goes first: a stop between the two renames leaves
	// it without its WAL, which a start refuses (openDiskStorage) and so
	// does --restore. The other order would leave a WAL whose snapshot is
	// missing, refused too, but by a reason that blames the member. A stop
	// before the renames leaves only staging: a member started anyway starts
	// empty under another cluster id, which the restored members refuse.
	for _, mv := range [][2]string{{"snap", snapdir}, {"wal", waldir}} {
		if err := os.Rename(filepath.Join(staging, mv[0]), mv[1]); err != nil {
			return "", err
		}
		if err := d.syncDir(o.dataDir); err != nil {
			return "", err
		}
	}
	if err := os.RemoveAll(staging); err != nil {
		return "", err
	}
	return fmt.Sprintf("restored %d keys at revision %d (digest %016x, sha256 %s) as member %d of cluster %s in %s",
		len(kv.kv), kv.revision, kv.digest, sum, o.id, formatClusterID(clusterID), o.dataDir), nil
}

// damagedBackup is the one-line reason a backup cannot be restored.
func damagedBackup(path string, err error) error {
	what := "damaged"
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		what = "truncated"
	}
	return fmt.Errorf("%w: %s is %s (%v)", errRestoreRefused, path, what, err)
}

// seedDataDir writes a member's WAL and snapshot directories (wal and snap
// under staging) holding the backup in f as a snapshot at restoredIndex, in
// the order a running member writes a snapshot: the data file, then the .snap
// file that refers to it, then the WAL record of the snapshot, then the hard
// state. Each is durable before the next is written, so no record ever points
// at a file that is not there.
func seedDataDir(lg *zap.Logger, o options, staging string, f *os.File, urls []string, clusterID uint64) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	d, state, err := openDiskStorage(lg, o.id, filepath.Join(staging, "wal"), filepath.Join(staging, "snap"),
		storageOptions{noFsync: o.unsafeNoFsync}, func() (uint64, error) { return clusterID, nil })
	if err != nil {
		return err
	}
	defer d.close()
	if state.existed {
		return fmt.Errorf("%s was not empty", staging) // removed above: not reached
	}
	if _, err := d.saveKV(restoredIndex, fileImage{f}); err != nil {
		return err
	}
	members := newMembership()
	cs := &raftpb.ConfState{}
	for i, u := range urls {
		id := uint64(i + 1)
		members.apply(&raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: &id, Context: []byte(u)})
		cs.Voters = append(cs.Voters, id)
	}
	snap := &raftpb.Snapshot{
		Data:     encodeSnapshotData(members.encode(clusterID)),
		Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(restoredIndex)), Term: new(uint64(restoredTerm)), ConfState: cs},
	}
	// saveSnapshot writes the .snap file, and only once it is durable the
	// WAL record: a record without its file would be a snapshot no start
	// can load.
	if err := d.saveSnapshot(snap); err != nil {
		return err
	}
	// Committed through the snapshot: raft must never take it for entries
	// it may lose.
	return d.save(&raftpb.HardState{Term: new(uint64(restoredTerm)), Commit: new(uint64(restoredIndex))}, nil)
}

// fileImage is a backup file as saveKV writes it out.
type fileImage struct{ f *os.File }

func (i fileImage) WriteTo(w io.Writer) (int64, error) { return io.Copy(w, i.f) }
