package e2e

// The robustness suite's learner fault (issue #14): a new member joins as a
// learner (it serves the clients and the watchers meanwhile, as any
// member: reads through the leader, writes forwarded), catches up, is
// promoted to voter, and a voter is removed (a follower, or now and then
// the leader), so that the cluster keeps three voters.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	tc "raftexample/internal/testcluster"
)

func (r *scenario) learnerPromote() error {
	l, err := r.leader()
	if err != nil {
		return err
	}
	n, err := r.c.StartLearner(l)
	if err != nil {
		return fmt.Errorf("adding a learner: %v", err)
	}
	r.event("added node %d as a learner through leader %d", n.ID, l.ID)
	// It is one, in its own eyes and the leader's.
	if err := tc.Poll(20*time.Second, func() error {
		st, err := n.LearnerStatus()
		if err != nil {
			return err
		}
		if !st.Learner {
			return fmt.Errorf("node %d's status does not say learner", n.ID)
		}
		l, err := r.leader()
		if err != nil {
			return err
		}
		lst, err := l.LearnerStatus()
		if err != nil {
			return err
		}
		if !slices.Contains(lst.Learners, uint64(n.ID)) {
			return fmt.Errorf("leader %d's learners are %v, without %d", l.ID, lst.Learners, n.ID)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := r.caughtUp(n); err != nil {
		return err
	}
	// A learner is promoted once it has caught up (409 before).
	refusals := 0
	if err := tc.Poll(30*time.Second, func() error {
		l, err := r.leader()
		if err != nil {
			return err
		}
		resp, err := l.Promote(n.ID)
		switch {
		case err != nil:
			return err
		case resp.Code == http.StatusOK:
			return nil
		case resp.Code == http.StatusConflict:
			refusals++
			return fmt.Errorf("promote on %v: 409 %s", l, strings.TrimSpace(resp.Body))
		}
		return tc.GiveUp(fmt.Errorf("promote on %v: %d %s", l, resp.Code, strings.TrimSpace(resp.Body)))
	}); err != nil {
		return err
	}
	r.event("promoted node %d to voter (%d refusals before)", n.ID, refusals)
	if err := tc.Poll(20*time.Second, func() error {
		for _, m := range r.c.Members() {
			if !m.Running() {
				continue
			}
			st, err := m.LearnerStatus()
			if err != nil {
				return err
			}
			if st.Learner || slices.Contains(st.Learners, uint64(n.ID)) {
				return fmt.Errorf("node %d still sees node %d as a learner: %+v", m.ID, n.ID, st)
			}
		}
		return nil
	}); err != nil {
		return err
	}

	// Remove a voter other than the new one: the leader now and then,
	// else a follower.
	l, err = r.leader()
	if err != nil {
		return err
	}
	victim, what := l, "the leader"
	if r.rng.Intn(3) > 0 || l == n {
		var fs []*tc.Node
		for _, m := range r.c.Members() {
			if m != l && m != n {
				fs = append(fs, m)
			}
		}
		if len(fs) == 0 {
			return fmt.Errorf("no follower to remove among %v", r.c.Members())
		}
		victim, what = fs[r.rng.Intn(len(fs))], "a follower"
	}
	if err := tc.Poll(30*time.Second, func() error {
		l, err := r.leader()
		if err != nil {
			return err
		}
		return r.c.RemoveMember(l, victim.ID)
	}); err != nil {
		return err
	}
	r.event("removed voter %d (%s)", victim.ID, what)
	if victim.Running() {
		if _, ok := victim.Wait(20 * time.Second); !ok {
			r.event("removed member %d did not exit by itself; killing it", victim.ID)
			victim.TryKill()
		}
	}
	return nil
}
