package api

import (
	"encoding/json"
	"net/http"
)

// ProblemContentType is the media type of problem documents (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem type URIs. Each is documented in openapi.yaml.
const (
	TypeValidation  = "https://offload.dev/problems/validation"
	TypeMalformed   = "https://offload.dev/problems/malformed-json"
	TypeMediaType   = "https://offload.dev/problems/unsupported-media-type"
	TypeTooLarge    = "https://offload.dev/problems/body-too-large"
	TypeNotFound    = "https://offload.dev/problems/not-found"
	TypeGone        = "https://offload.dev/problems/gone"
	TypeConflict    = "https://offload.dev/problems/conflict"
	TypeJobFailed   = "https://offload.dev/problems/job-failed"
	TypeUnavailable = "https://offload.dev/problems/unavailable"
	TypeInternal    = "https://offload.dev/problems/internal"
	TypeExpectation = "https://offload.dev/problems/expectation-failed"
	TypeMethod      = "https://offload.dev/problems/method-not-allowed"
	TypeCrossOrigin = "https://offload.dev/problems/cross-origin"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Instance identifies this occurrence (the request path).
	Instance string `json:"instance,omitempty"`
	// Errors names each bad field of a request that failed validation.
	Errors []FieldError `json:"errors,omitempty"`
	// JobID is set when the problem concerns a job that exists.
	JobID string `json:"job_id,omitempty"`
}

// FieldError names one bad field: Field is a JSON Pointer into the request
// body ("/args/width") or the name of a parameter or header.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error implements error so that a Problem can travel as one.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Title + ": " + p.Detail
	}
	return p.Title
}

// NewProblem builds a problem of the given type and status.
func NewProblem(typ string, status int, title, detail string) *Problem {
	return &Problem{Type: typ, Title: title, Status: status, Detail: detail}
}

// ValidationProblem is a 422 naming each bad field.
func ValidationProblem(detail string, errs ...FieldError) *Problem {
	p := NewProblem(TypeValidation, http.StatusUnprocessableEntity, "Request failed validation", detail)
	p.Errors = errs
	return p
}

// WriteProblem writes p as application/problem+json with its status.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", ProblemContentType)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
