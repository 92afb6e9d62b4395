package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"time"
)

// This file is the kvstore's side of snapshots: holding the map still while
// it is written out, and the encoding of a written map.
//
// The encoding is a stream, so that neither writing nor reading a snapshot
// needs a second copy of the map in memory:
//
//	format marker (uvarint, = 2^64-1) | format (uvarint, = 4)
//	proposal clock (uvarint) | remembered names (uvarint)
//	per name, oldest first: origin (uvarint) | id (uvarint) | ticks since the previous name's (uvarint)
//	    | outcome: revision << 2 | 2 if the key existed | 1 if the condition failed (uvarint) | modRevision (uvarint)
//	store revision (uvarint)
//	pair count (uvarint)
//	per pair: key length (uvarint) | key | value length (uvarint) | value
//	    | createRevision (uvarint) | modRevision (uvarint) | version (uvarint) | ttl (uvarint nanoseconds, 0: none)
//	CRC-32C of everything above (4 bytes, big-endian)
//
// Format 3 is format 4 without the pairs' ttl, written before keys could
// expire: its keys have none. Earlier versions wrote format 2, which has no outcomes, no revisions and
// no pair revisions: it restores revision 0 and keys with zero revisions,
// and names whose outcome is a change at an unknown revision (0), as
// commands of those versions had no conditions. Snapshots written before
// commands had names start at the pair count: no real count is 2^64-1, so
// the marker tells them apart, and they restore an empty window at clock 0
// (no named command can precede them).
const (
	kvSnapshotMarker          = 1<<64 - 1
	kvSnapshotFormat          = 4
	kvSnapshotFormatRevisions = 3
	kvSnapshotFormatOld       = 2
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// frozenKV is the map as it was at one log index, held still so that a
// snapshot can be written from it while later entries are applied.
type frozenKV struct {
	store    *kvstore
	kv       map[string]storedValue // read-only until Release
	index    uint64
	revision uint64
	// The window of applied proposals at index, copied: it is small next to
	// the map, and apply changes it in place.
	clock uint64
	names []appliedName
}

// freeze holds the map still at the index it has reached and returns it.
// Until the returned value is released, applied entries go to a side map of
// pending changes, which Release folds in: the writer reads the frozen map
// with no lock and apply never waits for it. Only one may be outstanding: the
// raft node takes one snapshot at a time.
func (s *kvstore) freeze() *frozenKV {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &frozenKV{store: s, kv: s.kv, index: s.index, revision: s.revision,
		clock: s.proposals.clock, names: slices.Clone(s.proposals.remembered())}
	s.frozen, s.pending = f, make(map[string]pendingValue)
	return f
}

// Release folds the changes made since freeze into the map. It does nothing
// if the map was replaced by a snapshot in the meantime.
func (f *frozenKV) Release() {
	s := f.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.frozen != f {
		return
	}
	for k, p := range s.pending {
		if p.deleted {
			delete(s.kv, k)
		} else {
			s.kv[k] = p.storedValue
		}
	}
	s.frozen, s.pending = nil, nil
}

// WriteTo encodes the frozen map to w.
func (f *frozenKV) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	crc := crc32.New(crc32c)
	bw := bufio.NewWriterSize(io.MultiWriter(cw, crc), 1<<16)
	var varint [binary.MaxVarintLen64]byte
	writeUvarint := func(n uint64) {
		bw.Write(binary.AppendUvarint(varint[:0], n))
	}
	writeUvarint(kvSnapshotMarker)
	writeUvarint(kvSnapshotFormat)
	writeUvarint(f.clock)
	writeUvarint(uint64(len(f.names)))
	var prev uint64
	for _, n := range f.names {
		writeUvarint(n.name.origin)
		writeUvarint(n.name.id)
		writeUvarint(n.at - prev)
		writeUvarint(encodeOutcome(n.result))
		writeUvarint(n.result.modRevision)
		prev = n.at
	}
	writeUvarint(f.revision)
	writeUvarint(uint64(len(f.kv)))
	for k, v := range f.kv {
		writeUvarint(uint64(len(k)))
		bw.WriteString(k)
		writeUvarint(uint64(len(v.value)))
		bw.WriteString(v.value) // a write error sticks in bw and is returned by Flush
		writeUvarint(v.meta.createRevision)
		writeUvarint(v.meta.modRevision)
		writeUvarint(v.meta.version)
		writeUvarint(uint64(v.meta.ttl))
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	_, err := cw.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// decodedKV is a map read back from a snapshot, with what the kvstore keeps
// alongside it.
type decodedKV struct {
	kv        map[string]storedValue
	digest    uint64
	bytes     int64 // of keys and values
	revision  uint64
	proposals *appliedProposals
}

// encodeOutcome packs an outcome but its modRevision into one number, as
// snapshots hold it.
func encodeOutcome(o outcome) uint64 {
	n := o.revision << 2
	if o.exists {
		n |= 2
	}
	if o.failed {
		n |= 1
	}
	return n
}

func decodeOutcome(n, modRevision uint64) outcome {
	return outcome{revision: n >> 2, exists: n&2 != 0, failed: n&1 != 0, modRevision: modRevision}
}

// replaceLocked makes a decoded snapshot the whole state; the caller holds
// s.mu for writing. A frozen map being written out stays as it was, and its
// Release no longer applies.
func (s *kvstore) replaceLocked(d *decodedKV) {
	s.kv, s.digest, s.keys, s.bytes, s.revision, s.proposals = d.kv, d.digest, len(d.kv), d.bytes, d.revision, d.proposals
	s.pending, s.frozen = nil, nil
}

// decodeKVSnapshot reads a map written by frozenKV.WriteTo from r, which
// holds size bytes. Any damage (a truncated or trailing byte, a flipped bit)
// is an error.
func decodeKVSnapshot(r io.Reader, size int64) (*decodedKV, error) {
	defer memGovernor.decoding(size)()
	sr, err := readKVSnapshot(r, size)
	if err != nil {
		return nil, err
	}
	// The count comes from the data; every pair takes at least two bytes, so
	// a corrupt count cannot make us allocate more than the data justifies.
	proposals, err := restoreAppliedProposals(sr.clock, sr.names)
	if err != nil {
		return nil, fmt.Errorf("decoding kv snapshot: %w", err)
	}
	out := &decodedKV{kv: make(map[string]storedValue, min(sr.count, uint64(max(size, 0))/2)), revision: sr.revision, proposals: proposals}
	for i := uint64(0); i < sr.count; i++ {
		k, v, err := sr.next(i)
		if err != nil {
			return nil, err
		}
		out.kv[k] = v
		out.digest += pairDigest(k, v)
		out.bytes += int64(len(k) + len(v.value))
	}
	if err := sr.finish(); err != nil {
		return nil, err
	}
	return out, nil
}

// verifyKVSnapshot checks, as decodeKVSnapshot would, that r holds an
// intact snapshot, without building the map: a snapshot received from a
// peer is checked so before raft may install it.
func verifyKVSnapshot(r io.Reader, size int64) error {
	sr, err := readKVSnapshot(r, size)
	if err != nil {
		return err
	}
	if _, err := restoreAppliedProposals(sr.clock, sr.names); err != nil {
		return fmt.Errorf("decoding kv snapshot: %w", err)
	}
	for i := uint64(0); i < sr.count; i++ {
		if _, _, err := sr.next(i); err != nil {
			return err
		}
	}
	return sr.finish()
}

// kvSnapshotReader reads the encoding: the window of applied proposals at
// once, then one pair at a time.
type kvSnapshotReader struct {
	d        *snapshotDecoder
	format   uint64 // 0 for a snapshot from before the marker
	clock    uint64
	names    []appliedName
	revision uint64
	count    uint64
}

func readKVSnapshot(r io.Reader, size int64) (*kvSnapshotReader, error) {
	if size < 4 {
		return nil, fmt.Errorf("decoding kv snapshot: %d bytes, shorter than its checksum", size)
	}
	// Everything but the checksum is read through body, which sums it as it
	// goes, a buffer at a time; the checksum is read from r itself.
	body := &crcReader{r: &io.LimitedReader{R: r, N: size - 4}}
	sr := &kvSnapshotReader{d: &snapshotDecoder{r: bufio.NewReaderSize(body, 1<<16), body: body, tail: r, size: size}}
	if err := sr.readHeader(); err != nil {
		return nil, fmt.Errorf("decoding kv snapshot: %w", err)
	}
	return sr, nil
}

func (sr *kvSnapshotReader) readHeader() error {
	n, err := sr.d.uvarint()
	if err != nil || n != kvSnapshotMarker {
		sr.count = n // a snapshot from before the marker
		return err
	}
	if sr.format, err = sr.d.uvarint(); err != nil || (sr.format != kvSnapshotFormat && sr.format != kvSnapshotFormatRevisions && sr.format >= kvSnapshotFormatRevisions) {
		return fmt.Errorf("unknown format %d (%v)", sr.format, err)
	}
	if sr.clock, err = sr.d.uvarint(); err != nil {
		return err
	}
	names, err := sr.d.uvarint()
	if err != nil {
		return err
	}
	// Every name takes at least three bytes: a corrupt count cannot make us
	// allocate more than the data justifies.
	if names > proposalWindow || names > uint64(max(sr.d.size, 0))/3 {
		return fmt.Errorf("%d remembered proposals, more than a window or the data holds", names)
	}
	sr.names = make([]appliedName, names)
	var at uint64
	for i := range sr.names {
		n := &sr.names[i]
		var gap, result uint64
		if n.name.origin, err = sr.d.uvarint(); err == nil {
			if n.name.id, err = sr.d.uvarint(); err == nil {
				gap, err = sr.d.uvarint()
			}
		}
		if err == nil && sr.format >= kvSnapshotFormatRevisions {
			var modRevision uint64
			if result, err = sr.d.uvarint(); err == nil {
				modRevision, err = sr.d.uvarint()
			}
			n.result = decodeOutcome(result, modRevision)
		} else {
			n.result = outcome{unknown: true}
		}
		if err != nil {
			return fmt.Errorf("remembered proposal %d: %w", i, err)
		}
		// restoreAppliedProposals checks the order; a gap that wraps the
		// counter around must not pass for it.
		if at+gap < at {
			return fmt.Errorf("remembered proposal %d: tick overflows", i)
		}
		at += gap
		n.at = at
	}
	if sr.format >= kvSnapshotFormatRevisions {
		if sr.revision, err = sr.d.uvarint(); err != nil {
			return err
		}
	}
	sr.count, err = sr.d.uvarint()
	return err
}

func (sr *kvSnapshotReader) next(i uint64) (k string, v storedValue, err error) {
	if k, err = sr.d.string(); err == nil {
		v.value, err = sr.d.string()
	}
	if err == nil && sr.format >= kvSnapshotFormatRevisions {
		if v.meta.createRevision, err = sr.d.uvarint(); err == nil {
			if v.meta.modRevision, err = sr.d.uvarint(); err == nil {
				v.meta.version, err = sr.d.uvarint()
			}
		}
		if err == nil && sr.format == kvSnapshotFormat {
			var ttl uint64
			if ttl, err = sr.d.uvarint(); err == nil && ttl != 0 {
				// As decodeCommand refuses a put with any other.
				v.meta.ttl = time.Duration(ttl)
				err = validTTL(v.meta.ttl)
			}
		}
		// As apply keeps them: no revision past the store's, none made
		// before the key was created.
		if err == nil && (v.meta.modRevision > sr.revision || v.meta.createRevision > v.meta.modRevision) {
			err = fmt.Errorf("revisions %d/%d do not fit a store at revision %d", v.meta.createRevision, v.meta.modRevision, sr.revision)
		}
	}
	if err != nil {
		return "", storedValue{}, fmt.Errorf("decoding kv snapshot pair %d: %w", i, err)
	}
	return k, v, nil
}

// finish checks that the pairs end where the checksum begins, the checksum,
// and that nothing follows it.
func (sr *kvSnapshotReader) finish() error {
	if _, err := sr.d.r.ReadByte(); err != io.EOF {
		return errors.New("decoding kv snapshot: bytes after the last pair")
	}
	var sum [4]byte
	if _, err := io.ReadFull(sr.d.tail, sum[:]); err != nil {
		return fmt.Errorf("decoding kv snapshot checksum: %w", err)
	}
	if got, want := binary.BigEndian.Uint32(sum[:]), sr.d.body.crc; got != want {
		return fmt.Errorf("kv snapshot is damaged: checksum %08x, want %08x", got, want)
	}
	if n, _ := sr.d.tail.Read(sum[:1]); n != 0 {
		return errors.New("decoding kv snapshot: trailing bytes after the checksum")
	}
	return nil
}

// crcReader sums what it reads.
type crcReader struct {
	r   io.Reader
	crc uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, crc32c, p[:n])
	return n, err
}

// snapshotDecoder reads the pieces of the encoding. It allocates nothing
// but the strings it returns: a restart decodes millions of them.
type snapshotDecoder struct {
	r    *bufio.Reader // over body
	body *crcReader    // all but the checksum, summed as read
	tail io.Reader     // the checksum, and then nothing
	size int64         // the whole stream's length: no string can be longer
}

func (d *snapshotDecoder) uvarint() (uint64, error) {
	n, err := binary.ReadUvarint(d.r)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (d *snapshotDecoder) string() (string, error) {
	n, err := d.uvarint()
	if err != nil {
		return "", err
	}
	if n > uint64(max(d.size, 0)) {
		return "", errors.New("string runs past the end")
	}
	if int(n) <= d.r.Size() {
		// Copied once, from the reader's buffer into the string.
		b, err := d.r.Peek(int(n))
		if err != nil {
			return "", noEOF(err)
		}
		str := string(b)
		_, err = d.r.Discard(int(n))
		return str, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		return "", noEOF(err)
	}
	return string(b), nil
}

// noEOF is err, but a stream that ends inside a piece is cut short.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
