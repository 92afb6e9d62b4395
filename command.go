package main

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A command is one change to the map, the payload of a normal raft entry
// alone or in a batch (see encodeBatch). Its encoding starts with an
// operation byte, so later operations add a new byte value and old logs keep
// decoding:
//
//	op (1 byte) | request id (uvarint) | key (uvarint length + bytes) | value (rest)
//
// A delete has no value.
type command struct {
	op    byte
	id    uint64 // the proposal's identity, reported back when applied
	key   string
	value string
}

const (
	opPut    byte = 1
	opDelete byte = 2
	opBatch  byte = 3 // not a command: an entry carrying several (see encodeBatch)
)

func encodeCommand(c command) []byte {
	buf := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(c.key)+len(c.value))
	buf = append(buf, c.op)
	buf = binary.AppendUvarint(buf, c.id)
	buf = appendString(buf, c.key)
	return append(buf, c.value...)
}

func decodeCommand(data []byte) (command, error) {
	if len(data) == 0 {
		return command{}, errors.New("empty command")
	}
	c := command{op: data[0]}
	if c.op != opPut && c.op != opDelete {
		return command{}, fmt.Errorf("unknown operation %d", c.op)
	}
	var err error
	if c.id, data, err = readUvarint(data[1:]); err != nil {
		return command{}, err
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
