package main

// Revisions and conditional requests (RFC 9110 §8.8.3, §13) as the HTTP API
// speaks them: a key's entity tag is its modRevision, quoted ("17"), and
// If-Match / If-None-Match make a write conditional on it. The condition is
// not checked here: it travels with the command and is checked when the
// command is applied (kvstore.apply), where it is atomic.

import (
	"net/http"
	"strconv"
	"strings"
)

// etag is the entity tag of revision rev.
func etag(rev uint64) string {
	var b [22]byte // one allocation: the string
	return string(append(strconv.AppendUint(append(b[:0], '"'), rev, 10), '"'))
}

// parseETag reads one strong entity tag of a revision: a decimal number in
// double quotes.
func parseETag(s string) (uint64, bool) {
	if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, false
	}
	digits := s[1 : len(s)-1]
	if digits[0] == '+' {
		return 0, false
	}
	rev, err := strconv.ParseUint(digits, 10, 64)
	return rev, err == nil
}

// conditionHeader returns the one value of header name ("" if absent), or
// an error if it is given more than once or as a list: the API takes one
// entity tag, or *.
func conditionHeader(r *http.Request, name string) (string, error) {
	vs := r.Header.Values(name)
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1 || strings.Contains(vs[0], ","):
		return "", apiErr(http.StatusBadRequest, name+" must be one entity tag (\"N\") or *, not a list")
	}
	return strings.TrimSpace(vs[0]), nil
}

// writeCondition reads the condition of a PUT or DELETE: If-Match: "N" (the
// key's modRevision is N), If-Match: * (the key exists) or, where
// createOnly allows it (PUT), If-None-Match: * (the key does not exist).
func writeCondition(r *http.Request, createOnly bool) (condition, error) {
	match, err := conditionHeader(r, "If-Match")
	if err != nil {
		return condition{}, err
	}
	noneMatch, err := conditionHeader(r, "If-None-Match")
	if err != nil {
		return condition{}, err
	}
	switch {
	case match != "" && noneMatch != "":
		return condition{}, apiErr(http.StatusBadRequest, "give If-Match or If-None-Match, not both")
	case match == "*":
		return condition{kind: condExists}, nil
	case match != "":
		rev, ok := parseETag(match)
		if !ok {
			return condition{}, apiErr(http.StatusBadRequest, `If-Match must be a revision in double quotes ("N", as ETag gives it) or *, not `+match)
		}
		return condition{kind: condModRevision, modRevision: rev}, nil
	case noneMatch == "*" && createOnly:
		return condition{kind: condAbsent}, nil
	case noneMatch != "" && createOnly:
		return condition{}, apiErr(http.StatusBadRequest, "If-None-Match on a write must be * (create only), not "+noneMatch)
	case noneMatch != "":
		return condition{}, apiErr(http.StatusBadRequest, "If-None-Match is not taken by DELETE")
	}
	return condition{}, nil
}

// unchangedCondition reads a GET's If-None-Match: "N" (or *) as the
// condition under which the key is unchanged since, so that the answer is
// 304: its modRevision is still N (or it exists). condNone if absent.
func unchangedCondition(r *http.Request) (condition, error) {
	tag, err := conditionHeader(r, "If-None-Match")
	switch {
	case err != nil || tag == "":
		return condition{}, err
	case tag == "*":
		return condition{kind: condExists}, nil
	}
	rev, ok := parseETag(tag)
	if !ok {
		return condition{}, apiErr(http.StatusBadRequest, `If-None-Match must be a revision in double quotes ("N", as ETag gives it) or *, not `+tag)
	}
	return condition{kind: condModRevision, modRevision: rev}, nil
}

// setRevision sets X-Revision, the store revision an answer reflects.
func setRevision(w http.ResponseWriter, revision uint64) {
	w.Header()["X-Revision"] = []string{strconv.FormatUint(revision, 10)}
}

// setKeyHeaders describes a key found with meta, at store revision. Every
// read sets these, so they are set as Header.Set would (the keys in
// canonical form: Etag), with one slice under the four values.
func setKeyHeaders(w http.ResponseWriter, meta keyMeta, revision uint64) {
	vs := []string{
		etag(meta.modRevision),
		strconv.FormatUint(meta.createRevision, 10),
		strconv.FormatUint(meta.version, 10),
		strconv.FormatUint(revision, 10),
	}
	h := w.Header()
	h["Etag"], h["X-Create-Revision"], h["X-Version"], h["X-Revision"] = vs[0:1:1], vs[1:2:2], vs[2:3:3], vs[3:4:4]
}

// writeAnswered answers a write that was applied with result, as of its
// application: 204 with the revision it left and, for a put, the key's new
// entity tag; or, when its condition did not hold, 412 with the key's
// entity tag then (none if it was absent) and, in JSON, its modRevision.
func (h *httpAPI) writeAnswered(w http.ResponseWriter, result outcome, isPut bool) error {
	if result.failed {
		setRevision(w, result.revision)
		msg := "the key does not exist"
		if result.exists {
			w.Header().Set("ETag", etag(result.modRevision))
			msg = "the key's modRevision is " + strconv.FormatUint(result.modRevision, 10)
		}
		return &apiError{code: http.StatusPreconditionFailed, msg: "precondition failed: " + msg,
			fields: map[string]any{"modRevision": result.modRevision}}
	}
	revision := result.revision
	if result.unknown {
		// Learnt from a snapshot written before revisions: the revision
		// is not known, the current one is as true.
		revision = h.svc.State().revision
	} else if isPut {
		w.Header()["Etag"] = []string{etag(result.modRevision)} // as Set("ETag") stores it
	}
	setRevision(w, revision)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
