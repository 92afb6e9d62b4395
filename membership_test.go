package main

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"testing"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/raft/v3/raftpb"
)

func mbAdd(id uint64, url string) *raftpb.ConfChange {
	return &raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: &id, Context: []byte(url)}
}

func mbRemove(id uint64) *raftpb.ConfChange {
	return &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: &id}
}

func TestMembershipCheckRefusesInvalidChanges(t *testing.T) {
	m := newMembership()
	for _, cc := range []*raftpb.ConfChange{mbAdd(1, "http://127.0.0.1:1"), mbAdd(2, "http://127.0.0.1:2"), mbRemove(2)} {
		if err := m.check(cc); err != nil {
			t.Fatalf("setting up: check(%v) = %v", cc, err)
		}
		m.apply(cc)
	}
	// Now: member 1 only; 2 was removed.
	cases := []struct {
		name string
		cc   *raftpb.ConfChange
		want error
	}{
		{"add an existing member", mbAdd(1, "http://127.0.0.1:9"), errMemberExists},
		{"add a removed id", mbAdd(2, "http://127.0.0.1:2"), errIDRemoved},
		{"add a new id", mbAdd(3, "http://127.0.0.1:3"), nil},
		{"remove a never-member", mbRemove(7), errNotMember},
		{"remove an already removed member", mbRemove(2), errNotMember},
		{"remove the last member", mbRemove(1), errLastMember},
	}
	for _, tc := range cases {
		if err := m.check(tc.cc); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: check = %v, want %v", tc.name, err, tc.want)
		}
	}
	update := &raftpb.ConfChange{Type: raftpb.ConfChangeUpdateNode.Enum(), NodeId: new(uint64(1)), Context: []byte("http://127.0.0.1:8")}
	if err := m.check(update); err == nil {
		t.Error("check accepted an unsupported conf change type (update)")
	}
	if got := m.list(); len(got) != 1 || got[0].ID != 1 {
		t.Fatalf("check changed the member list: %+v", got)
	}

	// With a second member, member 1 may go.
	m.apply(mbAdd(3, "http://127.0.0.1:3"))
	if err := m.check(mbRemove(1)); err != nil {
		t.Fatalf("removing one of two members: check = %v, want nil", err)
	}
}

func TestMembershipEncodeRestoreRoundTrips(t *testing.T) {
	m := newMembership()
	for _, cc := range []*raftpb.ConfChange{
		mbAdd(1, "http://127.0.0.1:1"), mbAdd(2, "http://127.0.0.1:2"), mbAdd(3, "https://h:3"),
		mbRemove(2), mbAdd(10, "http://127.0.0.1:10"), mbRemove(1),
	} {
		m.apply(cc)
	}
	data := m.encode(7)

	other := newMembership()
	other.apply(mbAdd(9, "http://127.0.0.1:9"))
	previous, err := other.restore(data)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if want := map[uint64]string{9: "http://127.0.0.1:9"}; !maps.Equal(previous, want) {
		t.Errorf("restore returned previous members %v, want %v", previous, want)
	}
	if got, want := other.list(), m.list(); !slices.Equal(got, want) {
		t.Errorf("restored members %+v, want %+v", got, want)
	}
	for id, removed := range map[uint64]bool{1: true, 2: true, 3: false, 9: false, 10: false} {
		if other.isRemoved(id) != removed {
			t.Errorf("restored isRemoved(%d) = %v, want %v", id, !removed, removed)
		}
	}
	if again := other.encode(7); !bytes.Equal(again, data) {
		t.Errorf("encoding is not deterministic:\n%s\n%s", data, again)
	}

	empty := newMembership()
	if _, err := other.restore(empty.encode(7)); err != nil {
		t.Fatalf("restoring an empty list: %v", err)
	}
	if len(other.list()) != 0 || other.isRemoved(1) {
		t.Errorf("restoring an empty list left %+v, removed(1)=%v", other.list(), other.isRemoved(1))
	}
}

func TestMembershipRestoreRejectsGarbageAndKeepsTheList(t *testing.T) {
	m := newMembership()
	m.apply(mbAdd(1, "http://127.0.0.1:1"))
	for _, bad := range [][]byte{nil, []byte("not json"), []byte(`{"members":"x"}`)} {
		if _, err := m.restore(bad); err == nil {
			t.Errorf("restore(%q) succeeded", bad)
		}
		if got := m.list(); len(got) != 1 || got[0].ID != 1 {
			t.Fatalf("failed restore(%q) changed the list to %+v", bad, got)
		}
	}
}

func TestParsePeerURLAcceptsOnlyHostPortAndNormalises(t *testing.T) {
	good := map[string]string{
		"http://127.0.0.1:1":          "http://127.0.0.1:1",
		"https://host:443":            "https://host:443",
		"http://[::1]:2380":           "http://[::1]:2380",
		"http://127.0.0.1:65535":      "http://127.0.0.1:65535",
		"HTTP://LocalHost:0080":       "http://localhost:80",
		"http://[0:0::1]:9":           "http://[::1]:9",
		"http://[::ffff:127.0.0.1]:9": "http://127.0.0.1:9",
	}
	bad := []string{
		"",
		"not a url",
		"ftp://x:1",
		"unix://x:1",
		"http://nohostport",
		"http://:1",
		"http://h:0",
		"http://h:70000",
		"http://h:-1",
		"http://h:abc",
		"http://h:1/",
		"http://127.0.0.1:47314/",
		"http://h:1/path",
		"http://u@h:1",
		"http://h:1?q=1",
		"http://h:1?",
		"http://h:1#frag",
		"http://[fe80::1%25eth0]:1",
		"127.0.0.1:1",
		"http://h:1 ",
		" http://h:1",
	}
	for in, want := range good {
		if got, err := parsePeerURL(in); err != nil || got != want {
			t.Errorf("parsePeerURL(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, u := range bad {
		if got, err := parsePeerURL(u); err == nil {
			t.Errorf("parsePeerURL(%q) = %q, want an error", u, got)
		}
	}
}

// FuzzParsePeerURLAgreesWithTheTransport checks the promise parsePeerURL
// makes: whatever it accepts, rafthttp's parser accepts too, both as given
// and normalised, and normalising is idempotent. A URL that rafthttp refuses
// panics inside the transport on every replica that applies it.
func FuzzParsePeerURLAgreesWithTheTransport(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:1", "http://127.0.0.1:1/", "HTTPS://[::1]:0443", "http://h:1?x", "unix://a:1", "http://%41:1", "http://h:1#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		norm, err := parsePeerURL(s)
		if err != nil {
			return
		}
		for _, u := range []string{s, norm} {
			if _, err := types.NewURLs([]string{u}); err != nil {
				t.Fatalf("parsePeerURL(%q) accepted %q, which types.NewURLs refuses: %v", s, u, err)
			}
		}
		if again, err := parsePeerURL(norm); err != nil || again != norm {
			t.Fatalf("parsePeerURL(%q) = %q, but parsePeerURL of that = %q, %v", s, norm, again, err)
		}
	})
}

func TestParseMemberID(t *testing.T) {
	for _, s := range []string{"0", "-1", "abc", "", "1.5", "18446744073709551616", "18446744073709551615", "9223372036854775808", " 7"} {
		if id, err := parseMemberID(s); err == nil {
			t.Errorf("parseMemberID(%q) = %d, want an error", s, id)
		}
	}
	for s, want := range map[string]uint64{"7": 7, "1": 1, "9223372036854775807": 9223372036854775807} {
		if id, err := parseMemberID(s); err != nil || id != want {
			t.Errorf("parseMemberID(%q) = %d, %v, want %d", s, id, err, want)
		}
	}
}
