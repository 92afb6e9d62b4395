package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A transaction is one command over several keys: compares, and two lists
// of operations, the success ones run if every compare holds when it is
// applied, the failure ones otherwise, all at one point in the log (see
// kvstore.applyTxn). Its body follows the command's base (see command):
//
//	compares (uvarint count) | per compare: field (1 byte) | key | number (uvarint) or value (string)
//	success (uvarint count) | per operation: kind (1 byte) | key | for a put: ttl (uvarint nanoseconds, 0: none) | value
//	failure, as success
//
// Keys and values are uvarint length + bytes. Every rule a transaction must
// satisfy is checked here, when it is decoded: the HTTP API decodes what it
// is about to propose with the same function apply uses, so a transaction
// it accepts is one every replica applies.
type txnCommand struct {
	compares []txnCompare
	success  []txnOp
	failure  []txnOp
}

// txnCompare is one comparison of a key's state with what the transaction
// expects: equality of one field.
type txnCompare struct {
	field  byte
	key    string
	number uint64 // for the revisions and version; 1 or 0 for cmpExists
	value  string // for cmpValue
}

const (
	cmpModRevision    byte = 1
	cmpCreateRevision byte = 2
	cmpVersion        byte = 3
	cmpValue          byte = 4
	cmpExists         byte = 5
)

// holds reports whether the compare holds of a key with v (found: whether
// it exists). A missing key has revisions and version 0 and no value.
func (c txnCompare) holds(v storedValue, found bool) bool {
	switch c.field {
	case cmpModRevision:
		return v.meta.modRevision == c.number
	case cmpCreateRevision:
		return v.meta.createRevision == c.number
	case cmpVersion:
		return v.meta.version == c.number
	case cmpValue:
		return found && v.value == c.value
	case cmpExists:
		return found == (c.number == 1)
	}
	return false
}

// txnOp is one operation of a transaction.
type txnOp struct {
	kind  byte
	key   string
	value string        // for a put
	ttl   time.Duration // for a put; 0 for none
}

const (
	txnPut    byte = 1
	txnDelete byte = 2
	txnGet    byte = 3
)

// maxTxnOps bounds the compares and operations of one transaction, all
// counted together.
const maxTxnOps = 128

func appendTxn(buf []byte, t *txnCommand) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(t.compares)))
	for _, c := range t.compares {
		buf = append(buf, c.field)
		buf = appendString(buf, c.key)
		if c.field == cmpValue {
			buf = appendString(buf, c.value)
		} else {
			buf = binary.AppendUvarint(buf, c.number)
		}
	}
	for _, ops := range [2][]txnOp{t.success, t.failure} {
		buf = binary.AppendUvarint(buf, uint64(len(ops)))
		for _, op := range ops {
			buf = append(buf, op.kind)
			buf = appendString(buf, op.key)
			if op.kind == txnPut {
				buf = binary.AppendUvarint(buf, uint64(op.ttl))
				buf = appendString(buf, op.value)
			}
		}
	}
	return buf
}

// decodeTxn decodes and checks a transaction's body.
func decodeTxn(data []byte) (*txnCommand, error) {
	t := &txnCommand{}
	n, data, err := readCount(data, maxTxnOps)
	if err != nil {
		return nil, fmt.Errorf("compares: %w", err)
	}
	t.compares = make([]txnCompare, n)
	for i := range t.compares {
		c := &t.compares[i]
		if len(data) == 0 {
			return nil, fmt.Errorf("compare %d is missing", i+1)
		}
		c.field, data = data[0], data[1:]
		if c.key, data, err = readString(data); err != nil {
			return nil, fmt.Errorf("compare %d: %w", i+1, err)
		}
		switch c.field {
		case cmpValue:
			c.value, data, err = readString(data)
		case cmpModRevision, cmpCreateRevision, cmpVersion, cmpExists:
			c.number, data, err = readUvarint(data)
			if err == nil && c.field == cmpExists && c.number > 1 {
				err = errors.New("exists is 0 or 1")
			}
		default:
			err = fmt.Errorf("unknown field %d", c.field)
		}
		if err == nil {
			err = validTxnKey(c.key)
		}
		if err != nil {
			return nil, fmt.Errorf("compare %d: %w", i+1, err)
		}
	}
	total := len(t.compares)
	for _, branch := range [2]struct {
		name string
		ops  *[]txnOp
	}{{"success", &t.success}, {"failure", &t.failure}} {
		if n, data, err = readCount(data, maxTxnOps-total); err != nil {
			return nil, fmt.Errorf("%s: %w", branch.name, err)
		}
		total += int(n)
		if *branch.ops, data, err = decodeTxnOps(data, n, branch.name); err != nil {
			return nil, err
		}
	}
	switch {
	case len(data) != 0:
		return nil, errors.New("trailing bytes after the transaction")
	case len(t.success)+len(t.failure) == 0:
		return nil, errors.New("a transaction needs at least one operation")
	}
	return t, nil
}

// decodeTxnOps decodes n operations of one branch, refusing a key written
// twice: its writes share one revision, so a second write to a key would
// make a change watchers could not tell from the first.
func decodeTxnOps(data []byte, n uint64, branch string) ([]txnOp, []byte, error) {
	ops := make([]txnOp, n)
	written := make(map[string]bool)
	for i := range ops {
		op := &ops[i]
		bad := func(err error) ([]txnOp, []byte, error) {
			return nil, nil, fmt.Errorf("%s operation %d: %w", branch, i+1, err)
		}
		if len(data) == 0 {
			return bad(errors.New("missing"))
		}
		var err error
		op.kind, data = data[0], data[1:]
		if op.key, data, err = readString(data); err != nil {
			return bad(err)
		}
		if err := validTxnKey(op.key); err != nil {
			return bad(err)
		}
		switch op.kind {
		case txnPut:
			var ttl uint64
			if ttl, data, err = readUvarint(data); err != nil {
				return bad(err)
			}
			if op.ttl = time.Duration(ttl); ttl != 0 {
				if err := validTTL(op.ttl); err != nil {
					return bad(err)
				}
			}
			if op.value, data, err = readString(data); err != nil {
				return bad(err)
			}
		case txnDelete, txnGet:
		default:
			return bad(fmt.Errorf("unknown kind %d", op.kind))
		}
		if op.kind != txnGet {
			if written[op.key] {
				return bad(fmt.Errorf("key %q is written twice in one branch", op.key))
			}
			written[op.key] = true
		}
	}
	return ops, data, nil
}

// readCount reads a count of at most limit items.
func readCount(data []byte, limit int) (uint64, []byte, error) {
	n, data, err := readUvarint(data)
	if err == nil && n > uint64(max(limit, 0)) {
		err = fmt.Errorf("a transaction has at most %d compares and operations in all", maxTxnOps)
	}
	return n, data, err
}

// validTxnKey is the HTTP API's rule for keys (validKey), for a
// transaction's keys.
func validTxnKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case len(key) > maxKeyBytes:
		return fmt.Errorf("key is longer than %d bytes", maxKeyBytes)
	}
	return nil
}
