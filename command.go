package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A command is one change to the map, the payload of a normal raft entry
// alone or in a batch (see encodeBatch). Its encoding starts with an
// operation byte, so later operations add a new byte value and old logs keep
// decoding:
//
//	op (1 byte) | origin (uvarint) | id (uvarint) | base (uvarint) | condition | [ttl] | key (uvarint length + bytes) | value (rest)
//	condition: kind (1 byte) | modRevision (uvarint, for kind condModRevision only)
//	ttl: nanoseconds (uvarint), for opPutTTL only
//
// A delete has no value. An expiry (opExpire) is a delete the leader
// proposes when a key's time to live is up (see expiry.go): anonymous, and
// conditional on the modRevision of the write that set the TTL. A
// transaction (opTxn) has its own body after base instead of a condition,
// key and value (see txn.go). origin and id name the proposal across the
// cluster, and base is when it was first proposed; the state machine uses
// both to apply a command proposed more than once only once (see
// appliedProposals). The condition is checked when the command is applied
// (see kvstore.apply): a command whose condition fails changes nothing.
//
// Logs written by earlier versions hold commands without a condition, which
// predate revisions, and they are applied as those versions did, moving no
// revision (see kvstore.apply):
//
//	op (4 = put, 5 = delete) | origin | id | base | key | value
//	op (1 = put, 2 = delete) | id (uvarint) | key | value      (anonymous: origin 0, applied every time they appear)
type command struct {
	op     byte   // opPut, opDelete or opTxn
	legacy bool   // written by a version before revisions (ops 1, 2, 4, 5)
	expiry bool   // a delete proposed because the key's TTL ran out (opExpire)
	origin uint64 // the member that proposed it; 0 for an anonymous command
	id     uint64 // the proposal's number at its origin, reported back when applied
	base   uint64 // the proposal clock the origin had applied when it first proposed
	cond   condition
	ttl    time.Duration // for a put: the key's time to live; 0 for none
	key    string
	value  string
	txn    *txnCommand // for opTxn
}

const (
	opPutAnonymous    byte = 1 // written by earlier versions
	opDeleteAnonymous byte = 2 // written by earlier versions
	opBatch           byte = 3 // not a command: an entry carrying several (see encodeBatch)
	opPutNamed        byte = 4 // written by earlier versions
	opDeleteNamed     byte = 5 // written by earlier versions
	opPut             byte = 6
	opDelete          byte = 7
	opPutTTL          byte = 8 // opPut with a time to live
	opExpire          byte = 9 // opDelete of a key whose time to live ran out
	opTxn             byte = 10
)

// A key's time to live is from minTTL to maxTTL. The range is part of what a
// command must be to apply, so a TTL outside it is refused at the HTTP API
// and, should one reach the log, skipped by every replica alike.
const (
	minTTL = time.Second
	maxTTL = 24 * time.Hour
)

// validTTL reports whether d is a time to live a put may carry.
func validTTL(d time.Duration) error {
	if d < minTTL || d > maxTTL {
		return fmt.Errorf("ttl must be from %s to %s, not %s", minTTL, maxTTL, d)
	}
	return nil
}

// condition is what must hold of a command's key, when the command is
// applied, for it to change anything.
type condition struct {
	kind        byte
	modRevision uint64 // for condModRevision
}

const (
	condNone        byte = 0
	condModRevision byte = 1 // the key exists and its modRevision is modRevision (If-Match: "N")
	condExists      byte = 2 // the key exists (If-Match: *)
	condAbsent      byte = 3 // the key does not exist (If-None-Match: *)
)

// holds reports whether c holds of a key with meta (found: whether it
// exists).
func (c condition) holds(found bool, meta keyMeta) bool {
	switch c.kind {
	case condModRevision:
		return found && meta.modRevision == c.modRevision
	case condExists:
		return found
	case condAbsent:
		return !found
	}
	return true
}

// name is the command's identity across the cluster; the zero value for an
// anonymous command.
func (c command) name() proposalName { return proposalName{origin: c.origin, id: c.id} }

// proposalName names a proposal across the cluster: the member that made it
// and the number that member gave it.
type proposalName struct{ origin, id uint64 }

// encodeCommand encodes c (op opPut, opDelete or opTxn; ttl and expiry
// choose the op written).
func encodeCommand(c command) []byte {
	op := c.op
	switch {
	case op == opPut && c.ttl != 0:
		op = opPutTTL
	case op == opDelete && c.expiry:
		op = opExpire
	}
	buf := make([]byte, 0, 2+6*binary.MaxVarintLen64+len(c.key)+len(c.value))
	buf = append(buf, op)
	buf = binary.AppendUvarint(buf, c.origin)
	buf = binary.AppendUvarint(buf, c.id)
	buf = binary.AppendUvarint(buf, c.base)
	if op == opTxn {
		return appendTxn(buf, c.txn)
	}
	buf = append(buf, c.cond.kind)
	if c.cond.kind == condModRevision {
		buf = binary.AppendUvarint(buf, c.cond.modRevision)
	}
	if op == opPutTTL {
		buf = binary.AppendUvarint(buf, uint64(c.ttl))
	}
	buf = appendString(buf, c.key)
	return append(buf, c.value...)
}

func decodeCommand(data []byte) (command, error) {
	if len(data) == 0 {
		return command{}, errors.New("empty command")
	}
	c := command{op: data[0]}
	data = data[1:]
	var err error
	switch c.op {
	case opPut, opDelete, opPutTTL, opExpire, opTxn, opPutNamed, opDeleteNamed:
		if c.origin, data, err = readUvarint(data); err != nil {
			return command{}, err
		}
		if c.id, data, err = readUvarint(data); err != nil {
			return command{}, err
		}
		if c.base, data, err = readUvarint(data); err != nil {
			return command{}, err
		}
		if c.op == opPutNamed || c.op == opDeleteNamed {
			c.op, c.legacy = c.op+opPut-opPutNamed, true
			break
		}
		if c.op == opTxn {
			if c.txn, err = decodeTxn(data); err != nil {
				return command{}, err
			}
			return c, nil
		}
		if len(data) == 0 {
			return command{}, errors.New("missing condition")
		}
		c.cond.kind, data = data[0], data[1:]
		switch c.cond.kind {
		case condNone, condExists, condAbsent:
		case condModRevision:
			if c.cond.modRevision, data, err = readUvarint(data); err != nil {
				return command{}, err
			}
		default:
			return command{}, fmt.Errorf("unknown condition %d", c.cond.kind)
		}
		switch c.op {
		case opPutTTL:
			var ttl uint64
			if ttl, data, err = readUvarint(data); err != nil {
				return command{}, err
			}
			// A uvarint past int64 turns negative, below the minimum.
			if c.ttl = time.Duration(ttl); validTTL(c.ttl) != nil {
				return command{}, validTTL(c.ttl)
			}
			c.op = opPut
		case opExpire:
			// An expiry that could remove a newer write would break the
			// promise that it never does.
			if c.cond.kind != condModRevision {
				return command{}, errors.New("an expiry must be conditional on a modRevision")
			}
			c.op, c.expiry = opDelete, true
		}
	case opPutAnonymous, opDeleteAnonymous:
		c.op, c.legacy = c.op+opPut-opPutAnonymous, true
		if c.id, data, err = readUvarint(data); err != nil {
			return command{}, err
		}
	default:
		return command{}, fmt.Errorf("unknown operation %d", c.op)
	}
	if c.key, data, err = readString(data); err != nil {
		return command{}, err
	}
	if c.op == opDelete && len(data) > 0 {
		return command{}, errors.New("delete carries a value")
	}
	c.value = string(data)
	return c, nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func readUvarint(data []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(data)
	if n <= 0 {
		return 0, nil, errors.New("bad uvarint")
	}
	return v, data[n:], nil
}

func readString(data []byte) (string, []byte, error) {
	n, data, err := readUvarint(data)
	if err != nil {
		return "", nil, err
	}
	if n > uint64(len(data)) {
		return "", nil, errors.New("string runs past the end")
	}
	return string(data[:n]), data[n:], nil
}

// validateEntryData reports whether the data of a normal entry would apply:
// the apply path splits it and decodes each command with the same functions,
// skipping whatever fails, so whatever passes here applies.
func validateEntryData(data []byte) error {
	cmds, err := splitEntry(data, nil)
	if err != nil {
		return err
	}
	for _, c := range cmds {
		if _, err := decodeCommand(c); err != nil {
			return err
		}
	}
	return nil
}

// An entry may carry several commands, proposed together (see batch.go):
//
//	opBatch (1 byte) | count (uvarint) | per command: length (uvarint) | command
func encodeBatch(cmds [][]byte) []byte {
	size := 1 + binary.MaxVarintLen64
	for _, c := range cmds {
		size += binary.MaxVarintLen64 + len(c)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, opBatch)
	buf = binary.AppendUvarint(buf, uint64(len(cmds)))
	for _, c := range cmds {
		buf = binary.AppendUvarint(buf, uint64(len(c)))
		buf = append(buf, c...)
	}
	return buf
}

// splitEntry returns the commands an entry's data carries, in order: itself
// if it is a single command, the pieces of a batch otherwise. The pieces
// share data's memory.
func splitEntry(data []byte, out [][]byte) ([][]byte, error) {
	if len(data) == 0 || data[0] != opBatch {
		return append(out, data), nil
	}
	n, rest, err := readUvarint(data[1:])
	if err != nil {
		return out, fmt.Errorf("batch count: %w", err)
	}
	if n > uint64(len(rest)) { // every command takes at least one byte
		return out, errors.New("batch count runs past the end")
	}
	for i := uint64(0); i < n; i++ {
		var size uint64
		if size, rest, err = readUvarint(rest); err != nil {
			return out, fmt.Errorf("batch command %d: %w", i, err)
		}
		if size > uint64(len(rest)) {
			return out, fmt.Errorf("batch command %d runs past the end", i)
		}
		out = append(out, rest[:size])
		rest = rest[size:]
	}
	if len(rest) != 0 {
		return out, errors.New("trailing bytes after the batch")
	}
	return out, nil
}
