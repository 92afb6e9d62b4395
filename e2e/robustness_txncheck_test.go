package e2e

// The checks of issue #14's traffic must be able to fail too: fed bad data
// (transactions, expiries), each reports it.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"raftexample/internal/lincheck"
	tc "raftexample/internal/testcluster"
)

// A watch run with a transaction (revision 2 puts j and k, k with a TTL;
// revision 3 deletes j) and an expiry (revision 4 removes k). Watcher A's
// first stream ends in the middle of revision 2 and it resumes after 1;
// watcher B sees it all in one stream.
func goodTxnWatchRun() ([]*watchLog, []lincheck.Op, watchAttempts, *watchListing) {
	prog := func(id uint64) watchFrame {
		return watchFrame{WatchEvent: tc.WatchEvent{ID: id, Type: "progress", Revision: id, Data: fmt.Sprintf(`{"revision":%d}`, id)}, at: 100}
	}
	put := func(id uint64, k, v string, create, version uint64) watchFrame {
		return watchFrame{WatchEvent: tc.WatchEvent{ID: id, Type: "put", Key: k, Value: v, Revision: id, CreateRevision: create, ModRevision: id, Version: version,
			Data: fmt.Sprintf(`{"key":%q,"value":%q,"revision":%d}`, k, v, id)}, at: 100}
	}
	del := func(id uint64, k string, expired bool) watchFrame {
		return watchFrame{WatchEvent: tc.WatchEvent{ID: id, Type: "delete", Key: k, Revision: id, Expired: expired, Data: fmt.Sprintf(`{"key":%q,"revision":%d,"expired":%v}`, k, id, expired)}, at: 100}
	}
	a := &watchLog{name: "watcher A", streams: []watchStream{
		{node: 1, after: 0, first: true, frames: []watchFrame{prog(0), put(1, "k", "a", 1, 1), put(2, "j", "b", 2, 1)}},
		{node: 2, after: 1, frames: []watchFrame{prog(1), put(2, "j", "b", 2, 1), put(2, "k", "c", 1, 2), del(3, "j", false), del(4, "k", true), prog(4)}},
	}}
	b := &watchLog{name: "watcher B", streams: []watchStream{
		{node: 2, after: 0, first: true, frames: []watchFrame{prog(0), put(1, "k", "a", 1, 1), put(2, "j", "b", 2, 1), put(2, "k", "c", 1, 2), del(3, "j", false), del(4, "k", true)}},
	}}
	two := lincheck.Op{Kind: lincheck.Txn, Revision: 2, Call: 10, Return: 20, Txn: &lincheck.TxnInfo{
		Compare:   []lincheck.Compare{{Key: "k", Target: lincheck.CmpModRevision, Num: 1}},
		Success:   []lincheck.TxnOp{{Kind: lincheck.Put, Key: "j", Value: "b"}, {Kind: lincheck.Put, Key: "k", Value: "c", TTL: 50}, {Kind: lincheck.Get, Key: "k"}},
		Failure:   []lincheck.TxnOp{{Kind: lincheck.Put, Key: "j", Value: "x"}},
		Succeeded: true,
		Results: []lincheck.TxnResult{{Kind: lincheck.Put, Key: "j", ModRevision: 2, Version: 1}, {Kind: lincheck.Put, Key: "k", ModRevision: 2, Version: 2},
			{Kind: lincheck.Get, Key: "k", Found: true, Value: "c", ModRevision: 2, CreateRevision: 1, Version: 2}},
	}}
	three := lincheck.Op{Kind: lincheck.Txn, Revision: 3, Call: 21, Return: 30, Txn: &lincheck.TxnInfo{
		Success: []lincheck.TxnOp{{Kind: lincheck.Delete, Key: "j"}}, Succeeded: true, Results: []lincheck.TxnResult{{Kind: lincheck.Delete, Key: "j", Found: true}},
	}}
	history := []lincheck.Op{{Kind: lincheck.Put, Key: "k", Value: "a", Found: true, Revision: 1, Call: 0, Return: 9}, two, three}
	att := watchAttempts{
		attempts: map[string]int64{"a": 0, "b": 10, "c": 10, "x": 10},
		attKey:   map[string]string{"a": "k", "b": "j", "c": "k", "x": "j"},
		refused:  map[string]bool{"x": true},
		deletes:  map[string]int64{"j": 21},
		ttls:     map[string]time.Duration{"c": 50},
	}
	return []*watchLog{a, b}, history, att, &watchListing{rev: 4, items: map[string]watchKV{}}
}

func TestRobustnessWatchCheckPassesTransactionsAndExpiries(t *testing.T) {
	logs, history, att, final := goodTxnWatchRun()
	stats, err := checkWatches(logs, history, att, final)
	if err != nil {
		t.Fatalf("a good run, yet: %v", err)
	}
	for _, want := range []string{"watcher A 5 events in 1 segments [[0 4]]", "watcher B 5 events", "6 acknowledged writes found"} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats %q lack %q", stats, want)
		}
	}
}

func TestRobustnessWatchChecksCatchDoctoredTransactionsAndExpiries(t *testing.T) {
	type doctor func(a, b *watchLog, h []lincheck.Op, att *watchAttempts)
	frames := func(w *watchLog, s int) *[]watchFrame { return &w.streams[s].frames }
	for _, tt := range []struct {
		name, want string
		doctor     doctor
	}{
		{"half a transaction delivered", `not put j="b" + put k="c"`, func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			f := frames(b, 0)
			*f = append((*f)[:3:3], (*f)[4:]...) // B misses k=c at 2
		}},
		{"a transaction's events in another order", `B saw`, func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			f := *frames(b, 0)
			f[2], f[3] = f[3], f[2]
		}},
		{"one event twice in a revision", "a second event", func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			f := frames(b, 0)
			*f = append((*f)[:4:4], append([]watchFrame{(*f)[3]}, (*f)[4:]...)...)
		}},
		{"a resumed stream starting in the middle of a revision", "after 2 (a duplicate or out of order)", func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			s := &a.streams[1]
			s.after, s.frames = 2, append([]watchFrame{{WatchEvent: tc.WatchEvent{ID: 2, Type: "progress", Revision: 2}}}, s.frames[2:]...)
		}},
		{"a resume that drops the rest of the revision", "not put j=\"b\" + put k=\"c\"", func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			// The watcher resumed after 2 although it had only j=b of it.
			s := &a.streams[1]
			s.after, s.frames = 2, append([]watchFrame{{WatchEvent: tc.WatchEvent{ID: 2, Type: "progress", Revision: 2}}}, s.frames[3:]...)
		}},
		{"an expiry before its TTL", "after its PUT (with TTL", func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			att.ttls["c"] = 95
		}},
		{"an expiry of a value written without TTL", "which no PUT with a TTL wrote", func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			delete(att.ttls, "c")
		}},
		{"an ordinary delete no client sent", "which no DELETE tried", func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			for _, f := range []*[]watchFrame{frames(a, 1), frames(b, 0)} {
				for i := range *f {
					(*f)[i].Expired = false
				}
			}
		}},
		{"a transaction's delete shown as an expiry", "which no PUT with a TTL wrote", func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			(*frames(a, 1))[3].Expired = true
			(*frames(b, 0))[4].Expired = true
		}},
		{"a put of the branch that did not run", "refused (412)", func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			att.refused["b"] = true
		}},
		{"a transaction's get showing a revision where the watch has no such put", "read k=\"c\" at revision 1", func(a, b *watchLog, h []lincheck.Op, att *watchAttempts) {
			h[1].Txn.Results[2].ModRevision = 1
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs, history, att, final := goodTxnWatchRun()
			tt.doctor(logs[0], logs[1], history, &att)
			_, err := checkWatches(logs, history, att, final)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestRobustnessLastWriteCheckTakesTransactionsAndExpiries(t *testing.T) {
	const final = 8
	put := func(v string, ttl time.Duration, call, ret int64) lincheck.Op {
		return lincheck.Op{Client: 0, Kind: lincheck.Put, Key: "k", Value: v, Found: true, TTL: ttl, Call: call, Return: ret}
	}
	read := func(v string, found bool, call int64) lincheck.Op {
		return lincheck.Op{Client: final, Kind: lincheck.Get, Key: "k", Value: v, Found: found, Call: call, Return: call + 10}
	}
	txn := func(succeeded bool, ret int64) lincheck.Op {
		return lincheck.Op{Client: 1, Kind: lincheck.Txn, Call: 20, Return: ret, Txn: &lincheck.TxnInfo{
			Success: []lincheck.TxnOp{{Kind: lincheck.Put, Key: "k", Value: "t"}, {Kind: lincheck.Put, Key: "j", Value: "t"}},
			Failure: []lincheck.TxnOp{{Kind: lincheck.Delete, Key: "k"}}, Succeeded: succeeded}}
	}
	for name, h := range map[string][]lincheck.Op{
		"a key expired TTL after its put":                      {put("a", 50, 0, 10), read("", false, 60)},
		"a transaction's put read last":                        {put("a", 0, 0, 10), txn(true, 30), read("t", true, 100)},
		"a transaction's failure branch deleted":               {put("a", 0, 0, 10), txn(false, 30), read("", false, 100)},
		"a transaction of unknown outcome may have run either": {put("a", 0, 0, 10), txn(false, lincheck.Infinity), read("", false, 100)},
	} {
		h = append(h, lincheck.Op{Client: final, Kind: lincheck.Get, Key: "j", Value: "t", Found: true, Call: 100, Return: 110})
		if err := checkLastWrites(h, final); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, h := range map[string][]lincheck.Op{
		"a key gone before its TTL":                   {put("a", 50, 0, 10), read("", false, 30)},
		"a key without TTL gone":                      {put("a", 0, 0, 10), read("", false, 100)},
		"a transaction's put lost":                    {put("a", 0, 0, 10), txn(true, 30), read("a", true, 100)},
		"a transaction's failure branch not deleting": {put("a", 0, 0, 10), txn(false, 30), read("a", true, 100)},
		"a transaction's write on its other key lost": {txn(true, 30), read("t", true, 100), {Client: final, Kind: lincheck.Get, Key: "j", Call: 100, Return: 110}},
	} {
		if err := checkLastWrites(h, final); err == nil {
			t.Errorf("%s passed", name)
		}
	}
}

func TestRobustnessClientsRefuseTxnAnswersAgainstTheContract(t *testing.T) {
	info := func() *lincheck.TxnInfo {
		return &lincheck.TxnInfo{
			Success: []lincheck.TxnOp{{Kind: lincheck.Put, Key: "a", Value: "1"}, {Kind: lincheck.Get, Key: "b"}},
			Failure: []lincheck.TxnOp{{Kind: lincheck.Delete, Key: "a"}},
		}
	}
	good := `{"succeeded":true,"revision":12,"results":[{"put":{"key":"a","modRevision":12,"version":3}},{"get":{"key":"Yg==","found":true,"value":"eA==","encoding":"base64","createRevision":4,"modRevision":9,"version":2}}]}`
	ti := info()
	if rev, err := parseTxnAnswer(good, ti); err != nil || rev != 12 || !ti.Succeeded || ti.Results[1].Value != "x" || ti.Results[1].CreateRevision != 4 || ti.Results[0].Version != 3 {
		t.Fatalf("good answer: %d %v %+v", rev, err, ti)
	}
	ti = info()
	if _, err := parseTxnAnswer(`{"succeeded":false,"revision":12,"results":null,"resultsUnknown":"snapshot"}`, ti); err != nil || ti.Results != nil {
		t.Fatalf("results unknown: %v %+v", err, ti)
	}
	readOnly := &lincheck.TxnInfo{Success: []lincheck.TxnOp{{Kind: lincheck.Get, Key: "a"}}}
	if rev, err := parseTxnAnswer(`{"succeeded":true,"revision":0,"results":[{"get":{"key":"a","found":false}}]}`, readOnly); err != nil || rev != 0 {
		t.Fatalf("a read of the empty store: %d %v", rev, err)
	}
	for _, bad := range []string{
		`{"succeeded":true,"revision":12,"results":[{"put":{"key":"a","modRevision":12,"version":3}}]}`,                                              // too few results
		`{"succeeded":false,"revision":12,"results":[{"put":{"key":"a","modRevision":12,"version":3}}]}`,                                             // results of the other branch
		`{"succeeded":true,"revision":12,"results":[{"put":{"key":"b","modRevision":12,"version":3}},{"get":{"key":"b"}}]}`,                          // wrong key
		`{"succeeded":true,"revision":12,"results":[{"put":{"key":"a","modRevision":12,"version":3}},{"get":{"key":"b","found":true,"value":"x"}}]}`, // found without revisions
		`{"succeeded":true,"revision":0,"results":[{"put":{"key":"a"}},{"get":{"key":"b"}}]}`,                                                        // revision 0 for one that wrote
		`{"succeeded":true,"revision":12,"results":null}`,                                                                                            // null without resultsUnknown
		`{"succeeded":true,"revision":12,"results":[],"extra":1}`,                                                                                    // unknown field
		`not json`,
	} {
		if _, err := parseTxnAnswer(bad, info()); err == nil {
			t.Errorf("%s passed", bad)
		}
	}
}
