package handlers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/statusstore"
)

// idempotencyHeader is the request header of
// draft-ietf-httpapi-idempotency-key-header.
const idempotencyHeader = "Idempotency-Key"

// replayedHeader marks an answer replayed for a repeated Idempotency-Key.
const replayedHeader = "Idempotent-Replayed"

// idempotencyKey returns the request's Idempotency-Key ("" for none), or a
// problem when it is malformed. The draft makes it a structured-field string,
// so surrounding quotes are removed.
func idempotencyKey(r *http.Request) (string, error) {
	raw := strings.TrimSpace(r.Header.Get(idempotencyHeader))
	if raw == "" {
		return "", nil
	}
	k := strings.TrimSuffix(strings.TrimPrefix(raw, `"`), `"`)
	if !visibleASCII(k, 255) {
		p := api.NewProblem(api.TypeValidation, http.StatusBadRequest, "Invalid Idempotency-Key",
			"the key must be 1 to 255 printable ASCII characters without spaces")
		p.Errors = []api.FieldError{{Field: idempotencyHeader, Message: "1 to 255 printable ASCII characters"}}
		return "", p
	}
	return k, nil
}

// clientScope names the client an idempotency key belongs to: a digest of its
// credentials, so that two clients' keys never collide.
func clientScope(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "anon"
	}
	sum := sha256.Sum256([]byte(auth))
	return hex.EncodeToString(sum[:12])
}

// fingerprint identifies a job request by its meaning, not its bytes: the
// same fields with other white space or key order give the same fingerprint.
func fingerprint(req api.JobRequest) string {
	req.Args = compact(req.Args)
	b, _ := json.Marshal(req)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// replay answers a request whose key another request already used: the same
// job and Location as the first answer, or a problem when the body differs or
// the first request is still being admitted.
func (a *service) replay(w http.ResponseWriter, r *http.Request, c statusstore.Claim, fp string) error {
	if c.Fingerprint != fp {
		p := api.ValidationProblem("this Idempotency-Key was used with another request body",
			api.FieldError{Field: idempotencyHeader, Message: "already used for a different request"})
		p.JobID = c.JobID
		return p
	}
	if c.Pending {
		w.Header().Set("Retry-After", "1")
		p := api.NewProblem(api.TypeConflict, http.StatusConflict, "Request in progress",
			"a request with this Idempotency-Key is still being admitted; retry shortly")
		p.JobID = c.JobID
		return p
	}
	job, err := a.status.Get(r.Context(), c.JobID)
	if errors.Is(err, statusstore.ErrGone) || errors.Is(err, statusstore.ErrNotFound) {
		// The key outlived the job's retention (IDEMPOTENCY_TTL above
		// RETENTION): the request was taken, and what it made is gone.
		p := api.NewProblem(api.TypeGone, http.StatusGone, "Job expired",
			"this Idempotency-Key's job finished and its retention has ended; send the request with a new key to run it again")
		p.JobID = c.JobID
		return p
	}
	if err != nil {
		return err
	}
	w.Header().Set(replayedHeader, "true")
	return a.accepted(w, job)
}
