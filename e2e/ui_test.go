package e2e

// The cluster page (/ui/) in a real browser: a headless Chromium loads it
// from one member of a 3-member cluster and the tests read what it shows
// while the cluster changes under it.

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	tc "raftexample/internal/testcluster"
)

// pageView is what the page shows, as read from its DOM.
type pageView struct {
	Self    string   `json:"self"`    // "member N": whose view it is
	Leader  string   `json:"leader"`  // the leader's id ("0": none known, "": not shown)
	Rows    []string `json:"rows"`    // the member table's ids, in order
	Alert   string   `json:"alert"`   // the banner, "" when hidden
	Offline bool     `json:"offline"` // the page has no contact with its member
	Changes []string `json:"changes"` // the recent changes, newest first
	Action  string   `json:"action"`  // what the last button did
	Writes  string   `json:"writes"`  // writes per second
}

const pageViewJS = `(() => {
  const $ = (id) => document.getElementById(id);
  return {
    self: $('self').textContent,
    leader: $('leader').dataset.id,
    rows: [...document.querySelectorAll('#members tbody tr')].map((tr) => tr.dataset.id),
    alert: $('alert').hidden ? '' : $('alert').textContent,
    offline: document.body.classList.contains('offline'),
    changes: [...document.querySelectorAll('#changes li')].map((li) => li.textContent),
    action: $('action').textContent,
    writes: $('wps').textContent,
  };
})()`

// waitView polls the page until ok accepts what it shows, failing the test
// after timeout; it returns the view it accepted.
func (b *browser) waitView(t *testing.T, timeout time.Duration, ok func(v pageView) error) pageView {
	t.Helper()
	var v pageView
	err := tc.Poll(timeout, func() error {
		var err error
		if v, err = evalIn[pageView](b, pageViewJS); err != nil {
			return err
		}
		if err := ok(v); err != nil {
			return fmt.Errorf("%w; the page shows %+v", err, v)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("within %v: %v", timeout, err)
	}
	return v
}

func TestUIClusterPage(t *testing.T) {
	b := newBrowser(t)
	c := tc.StartCluster(t, 3)
	leader, _ := tc.WaitLeader(t, tc.Timeout, c.Members()...)
	served := c.Except(leader)[0]        // the page's member: a follower, so it outlives the leader
	third := c.Except(leader, served)[0] // where leadership is moved to
	if err := b.do(chromedp.Navigate(served.URL("/ui/"))); err != nil {
		t.Fatalf("loading the page: %v", err)
	}

	// A trickle of writes, so the rates and the screenshot have something.
	stopWrites := make(chan struct{})
	var writes sync.WaitGroup
	writes.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopWrites:
				return
			case <-time.After(50 * time.Millisecond):
			}
			served.Put(fmt.Sprintf("ui-load-%d", i), "v") // during an election it may fail: no matter
		}
	})
	stop := sync.OnceFunc(func() { close(stopWrites); writes.Wait() })
	defer stop()

	t.Run("loads with no console errors and shows three members and the leader", func(t *testing.T) {
		want := []string{"1", "2", "3"}
		b.waitView(t, 10*time.Second, func(v pageView) error {
			switch {
			case v.Self != fmt.Sprintf("member %d", served.ID):
				return fmt.Errorf("not member %d's view", served.ID)
			case strings.Join(v.Rows, ",") != strings.Join(want, ","):
				return fmt.Errorf("members %v, want %v", v.Rows, want)
			case v.Leader != strconv.Itoa(leader.ID):
				return fmt.Errorf("leader %q, want %d", v.Leader, leader.ID)
			case v.Alert != "":
				return fmt.Errorf("an alert")
			}
			return nil
		})
		if errs := b.errors(true); len(errs) > 0 {
			t.Errorf("the console has errors:\n%s", strings.Join(errs, "\n"))
		}
	})

	t.Run("shows writes per second", func(t *testing.T) {
		b.waitView(t, 5*time.Second, func(v pageView) error {
			if n, err := strconv.ParseFloat(v.Writes, 64); err != nil || n <= 0 {
				return fmt.Errorf("writes/s %q, want more than 0", v.Writes)
			}
			return nil
		})
	})

	t.Run("a PUT appears in the recent changes", func(t *testing.T) {
		leader.MustPut("ui-seen", "hello from the e2e test")
		b.waitView(t, 5*time.Second, func(v pageView) error {
			for _, ch := range v.Changes {
				if strings.Contains(ch, "put ui-seen = hello from the e2e test") {
					return nil
				}
			}
			return fmt.Errorf("no change of ui-seen")
		})
	})

	t.Run("the transfer button moves leadership", func(t *testing.T) {
		if err := b.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-transfer="%d"]`, third.ID)))); err != nil {
			t.Fatalf("clicking Make leader of %v: %v", third, err)
		}
		tc.Eventually(t, 10*time.Second, func() error {
			st, err := served.Status()
			if err != nil {
				return err
			}
			if st.Leader != uint64(third.ID) {
				return fmt.Errorf("%v says the leader is %d, want %d", served, st.Leader, third.ID)
			}
			return nil
		})
		b.waitView(t, 5*time.Second, func(v pageView) error {
			if v.Leader != strconv.Itoa(third.ID) || v.Action != fmt.Sprintf("Member %d leads.", third.ID) {
				return fmt.Errorf("want leader %d and the button's answer", third.ID)
			}
			return nil
		})
		b.screenshot(t, "ui-follower.png")
		// The leader's page has the followers' progress: the one for the
		// README. Then back to the follower's.
		if err := b.do(chromedp.Navigate(third.URL("/ui/"))); err != nil {
			t.Fatalf("loading %v's page: %v", third, err)
		}
		b.waitView(t, 5*time.Second, func(v pageView) error {
			if n, err := strconv.ParseFloat(v.Writes, 64); v.Leader != strconv.Itoa(third.ID) || err != nil || n <= 0 {
				return fmt.Errorf("want leader %d and the rates", third.ID)
			}
			return nil
		})
		b.screenshot(t, "ui-leader.png")
		if err := b.do(chromedp.Navigate(served.URL("/ui/"))); err != nil {
			t.Fatalf("loading the page: %v", err)
		}
		b.waitView(t, 5*time.Second, func(v pageView) error {
			if v.Leader != strconv.Itoa(third.ID) {
				return fmt.Errorf("want leader %d", third.ID)
			}
			return nil
		})
		if errs := b.errors(true); len(errs) > 0 {
			t.Errorf("the console has errors:\n%s", strings.Join(errs, "\n"))
		}
	})

	t.Run("after SIGKILL of the leader the page shows the new leader within 3 s", func(t *testing.T) {
		third.Kill()
		killed := time.Now()
		v := b.waitView(t, 3*time.Second, func(v pageView) error {
			if v.Leader == "" || v.Leader == "0" || v.Leader == strconv.Itoa(third.ID) || v.Alert != "" {
				return fmt.Errorf("no new leader")
			}
			return nil
		})
		t.Logf("the page showed leader %s %v after SIGKILL of leader %v", v.Leader, time.Since(killed).Round(time.Millisecond), third)
		st, err := served.Status()
		if err != nil || strconv.FormatUint(st.Leader, 10) != v.Leader {
			t.Errorf("the page shows leader %s; %v's status says %d (%v)", v.Leader, served, st.Leader, err)
		}
	})

	t.Run("a member cut off from the majority says it knows no leader", func(t *testing.T) {
		stop()
		leader.Kill() // the last other member: served is alone
		b.waitView(t, 10*time.Second, func(v pageView) error {
			if v.Leader != "0" || !strings.Contains(v.Alert, "knows no leader") {
				return fmt.Errorf("no word of the lost leader")
			}
			return nil
		})
	})

	t.Run("when its member is gone the page says so and shows no numbers", func(t *testing.T) {
		served.Kill()
		b.waitView(t, 5*time.Second, func(v pageView) error {
			if !v.Offline || !strings.Contains(v.Alert, "Cut off from member") || len(v.Rows) != 0 || v.Leader != "" {
				return fmt.Errorf("not offline")
			}
			return nil
		})
	})

	if errs := b.errors(false); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}
