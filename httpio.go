package main

// What the HTTP API reads and writes besides keys and values: JSON bodies in,
// one-line errors and JSON out, and which status each outcome gets.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"go.uber.org/zap"
)

// apiError is a request the handler refused itself: the status and one line
// saying why. Any other error a handler returns came from the service, and
// statusFor gives its status.
type apiError struct {
	code   int
	msg    string
	fields map[string]any // more of the answer, in the JSON face only
}

func (e *apiError) Error() string { return e.msg }

func apiErr(code int, msg string) error { return &apiError{code: code, msg: msg} }

// A face is how one API writes its errors: plain text at the root (keys,
// members, /health, /readyz, /metrics, pprof), JSON under /v1.
// JSON errors are {"error": msg}, with fields beside it.
type face func(w http.ResponseWriter, code int, msg string, fields map[string]any)

func plainFace(w http.ResponseWriter, code int, msg string, _ map[string]any) {
	http.Error(w, msg, code)
}

func jsonFace(w http.ResponseWriter, code int, msg string, fields map[string]any) {
	body := map[string]any{"error": msg}
	for k, v := range fields {
		body[k] = v
	}
	writeJSON(w, code, body)
}

// apiHandler serves a request, or returns why it did not; nothing may be
// written before an error is returned.
type apiHandler func(w http.ResponseWriter, r *http.Request) error

// serve turns fn into a handler that writes fn's error in face.
func (h *httpAPI) serve(f face, fn apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			code, msg, fields := h.describe(err)
			f(w, code, msg, fields)
		}
	})
}

// describe gives err's status, the line that says why, and what more a
// JSON answer holds.
func (h *httpAPI) describe(err error) (code int, msg string, fields map[string]any) {
	var refused *apiError
	if errors.As(err, &refused) {
		return refused.code, refused.msg, refused.fields
	}
	code = statusFor(err)
	if code == http.StatusInternalServerError {
		h.lg.Error("request failed", zap.Error(err))
		return code, "internal error: " + err.Error(), nil
	}
	return code, err.Error(), nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// maxJSONBodyBytes bounds the JSON bodies the API takes (member changes,
// leadership transfer).
const maxJSONBodyBytes = 4096

// decodeJSONBody reads r's body as exactly one JSON object into v, refusing
// what encoding/json would let through silently: unknown fields, a field
// given twice (the last would win), and anything after the object.
func decodeJSONBody(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONBodyUpTo(w, r, v, maxJSONBodyBytes)
}

// decodeJSONBodyUpTo is decodeJSONBody for a body of at most limit bytes; a
// longer one is an *http.MaxBytesError.
func decodeJSONBodyUpTo(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return err
	}
	if err := checkJSONObject(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// checkJSONObject checks that data is one JSON object with no field given
// twice (at its top level, where the API's bodies have all their fields),
// and nothing after it but white space.
func checkJSONObject(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if seen[name] {
			return fmt.Errorf("field %q is given twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// statusFor maps why a request did not complete to a status: 503 when the
// cluster could not (or could not be shown to) do it now, 4xx when it was
// refused.
func statusFor(err error) int {
	var remote *leaderAnswer
	switch {
	case errors.As(err, &remote):
		return remote.code
	case errors.Is(err, errNoLeader), errors.Is(err, errOutcomeUnknown), errors.Is(err, errLeaderLost),
		errors.Is(err, errStopped), errors.Is(err, errReadUnconfirmed), errors.Is(err, errApplyBehind),
		errors.Is(err, errTransferTimeout):
		return http.StatusServiceUnavailable
	case errors.Is(err, errNotMember):
		return http.StatusNotFound
	case errors.Is(err, errBadMemberID):
		return http.StatusBadRequest
	case errors.Is(err, errMemberExists), errors.Is(err, errIDRemoved), errors.Is(err, errLastMember),
		errors.Is(err, errPeerURLInUse), errors.Is(err, errChangeInFlight), errors.Is(err, errWouldLoseQuorum),
		errors.Is(err, errNotLearner), errors.Is(err, errLearnerNotReady), errors.Is(err, errLearnerCannotLead):
		return http.StatusConflict
	default:
		return http.StatusInternalServerError
	}
}
