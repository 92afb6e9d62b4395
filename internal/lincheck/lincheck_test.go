package lincheck

import (
	"os"
	"sync"
	"testing"

	"github.com/anishathalye/porcupine"
)

func TestLinearizableHistoryIsOk(t *testing.T) {
	h := []Op{
		{Client: 0, Kind: Put, Key: "a", Value: "1", Found: true, Call: 0, Return: 10},
		{Client: 1, Kind: Get, Key: "a", Value: "1", Found: true, Call: 5, Return: 15},
		{Client: 2, Kind: Get, Key: "b", Call: 5, Return: 6},
		{Client: 0, Kind: Delete, Key: "a", Call: 20, Return: 30},
		{Client: 1, Kind: Get, Key: "a", Call: 31, Return: 40},
	}
	res, err := Check(h, 0, t.TempDir(), "ok")
	if err != nil || res.Verdict != porcupine.Ok || res.HTML != "" {
		t.Fatalf("got %+v, %v; want Ok and no HTML", res, err)
	}
}

func TestStaleReadIsIllegalAndVisualized(t *testing.T) {
	h := []Op{
		{Client: 0, Kind: Put, Key: "a", Value: "1", Found: true, Call: 0, Return: 10},
		{Client: 0, Kind: Put, Key: "a", Value: "2", Found: true, Call: 11, Return: 20},
		{Client: 1, Kind: Get, Key: "a", Value: "1", Found: true, Call: 21, Return: 30},
	}
	dir := t.TempDir()
	res, err := Check(h, 0, dir, "stale")
	if err != nil || res.Verdict != porcupine.Illegal || len(res.Keys) != 1 || res.Keys[0] != "a" {
		t.Fatalf("got %+v, %v; want Illegal on key a", res, err)
	}
	if fi, err := os.Stat(res.HTML); err != nil || fi.Size() == 0 {
		t.Fatalf("visualization %q: %v", res.HTML, err)
	}
}

func TestLostAcknowledgedWriteIsIllegal(t *testing.T) {
	h := []Op{
		{Client: 0, Kind: Put, Key: "a", Value: "1", Found: true, Call: 0, Return: 10},
		{Client: 1, Kind: Get, Key: "a", Call: 20, Return: 30},
	}
	if res, _ := Check(h, 0, "", ""); res.Verdict != porcupine.Illegal {
		t.Fatalf("a read missing an acknowledged put: got %v, want Illegal", res.Verdict)
	}
}

func TestUnknownWriteMayTakeEffectLater(t *testing.T) {
	r := NewRecorder()
	r.Add(Op{Client: 0, Kind: Put, Key: "a", Value: "1", Found: true, Call: 0, Return: 10})
	r.Add(Op{Client: 1, Kind: Put, Key: "a", Value: "2", Found: true, Call: 5, Return: Infinity})
	r.Add(Op{Client: 2, Kind: Get, Key: "a", Value: "1", Found: true, Call: 20, Return: 30})
	r.Add(Op{Client: 2, Kind: Get, Key: "a", Value: "2", Found: true, Call: 40, Return: 50})
	if res, _ := Check(r.History(), 0, "", ""); res.Verdict != porcupine.Ok {
		t.Fatalf("got %v, want Ok", res.Verdict)
	}
	// ... but not undo itself: once seen, it stays.
	r.Add(Op{Client: 2, Kind: Get, Key: "a", Value: "1", Found: true, Call: 60, Return: 70})
	if res, _ := Check(r.History(), 0, "", ""); res.Verdict != porcupine.Illegal {
		t.Fatalf("got %v, want Illegal", res.Verdict)
	}
}

func TestRecorderIsSafeForConcurrentUse(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				call := r.Now()
				r.Put(c, "k", "v", call, i%2 == 0)
				r.Get(c, "k", "", false, r.Now())
			}
		}(c)
	}
	wg.Wait()
	h := r.History()
	if len(h) != 1600 {
		t.Fatalf("%d ops recorded, want 1600", len(h))
	}
	unknown := 0
	for i, op := range h {
		if i > 0 && h[i-1].Call > op.Call {
			t.Fatalf("history not in call order at %d", i)
		}
		if op.Unknown() {
			unknown++
		}
	}
	if unknown != 400 {
		t.Fatalf("%d unknown ops, want 400", unknown)
	}
}
