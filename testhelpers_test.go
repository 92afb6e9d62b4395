package main

import "context"

// Shorthands for the tests of this package, which mostly care about values
// and not revisions.

// value reads key's value.
func (s *kvstore) value(key string) (string, bool) {
	v, found, _ := s.Lookup(key)
	return v.value, found
}

// put writes key=value unconditionally and waits until it is applied here.
func (s *service) put(ctx context.Context, key, value string) error {
	_, err := s.Put(ctx, key, value, 0, condition{})
	return err
}
