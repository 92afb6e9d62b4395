package testcluster

// Learners (issue #14): add a non-voting member, promote it.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// StartLearner prepares the next node (NewJoiner), asks through via to add
// it as a learner (POST /v1/members with "learner": true), and starts it.
// It returns the new node once it serves HTTP. If the request fails, the
// node does not count as a member (unless a listing shows it was added).
func (c *Cluster) StartLearner(via *Node) (*Node, error) {
	n := c.NewJoiner()
	id := n.ID
	body, _ := json.Marshal(map[string]any{"id": id, "peerURL": n.PeerURL, "learner": true})
	resp, err := via.DoRequest(http.MethodPost, "/v1/members", string(body), http.Header{"Content-Type": {"application/json"}})
	if err == nil && resp.Code != http.StatusCreated {
		err = fmt.Errorf("POST /v1/members %s on %v: status %d: %s", body, via, resp.Code, strings.TrimSpace(resp.Body))
	}
	if err == nil {
		var m struct {
			ID      uint64 `json:"id"`
			Learner bool   `json:"learner"`
		}
		if json.Unmarshal([]byte(resp.Body), &m) != nil || m.ID != uint64(id) || !m.Learner {
			err = fmt.Errorf("POST /v1/members %s on %v: 201 with %s", body, via, strings.TrimSpace(resp.Body))
		}
	}
	if err != nil {
		// The outcome may be unknown: the learner may have been added after all.
		Poll(10*time.Second, func() error {
			var ms []Member
			if _, err2 := via.GetJSON("/v1/members", &ms); err2 != nil {
				return err2
			}
			for _, m := range ms {
				if m.ID == uint64(id) {
					err = nil
				}
			}
			return nil
		})
	}
	if err != nil {
		c.forget(id)
		return nil, err
	}
	n.Start()
	if err := n.WaitServing(30 * time.Second); err != nil {
		return n, err
	}
	return n, nil
}

// Promote asks this node to make learner id a voter (POST
// /v1/members/{id}/promote).
func (n *Node) Promote(id int) (Response, error) {
	return n.DoRequest(http.MethodPost, fmt.Sprintf("/v1/members/%d/promote", id), "", nil)
}

// LearnerStatus is what /v1/status says of learners.
type LearnerStatus struct {
	ID       uint64   `json:"id"`
	Learner  bool     `json:"learner"`  // this member is one
	Learners []uint64 `json:"learners"` // the learners it knows of
}

// LearnerStatus reads n's /v1/status for its learners.
func (n *Node) LearnerStatus() (LearnerStatus, error) {
	var st LearnerStatus
	code, err := n.GetJSON("/v1/status", &st)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /v1/status on %v: %d", n, code)
	}
	return st, err
}
