package handlers

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
)

// handlerFunc is the shape of every handler: it writes a success itself and
// returns an error for anything else, which handle turns into a problem.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// errorTable maps the sentinel errors handlers branch on to problems.
var errorTable = []struct {
	err    error
	status int
	typ    string
	title  string
}{
	{queue.ErrNotFound, http.StatusNotFound, api.TypeNotFound, "Not found"},
	{statusstore.ErrNotFound, http.StatusNotFound, api.TypeNotFound, "Not found"},
	{statusstore.ErrGone, http.StatusGone, api.TypeGone, "Gone: retention of this job ended"},
	{queue.ErrConflict, http.StatusConflict, api.TypeConflict, "Conflict with the job's state"},
	{statusstore.ErrBadCursor, http.StatusBadRequest, api.TypeValidation, "Invalid cursor"},
	{statusstore.ErrBadState, http.StatusBadRequest, api.TypeValidation, "Invalid state"},
	{queue.ErrBadQueueName, http.StatusBadRequest, api.TypeValidation, "Invalid queue name"},
	{queue.ErrExists, http.StatusConflict, api.TypeConflict, "A job with this id exists"},
}

// handle adapts a handlerFunc to http.HandlerFunc.
func handle(log zerolog.Logger, fn handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := fn(w, r)
		if err == nil {
			return
		}
		p := problemFor(err)
		p.Instance = r.URL.Path
		if p.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", retryAfterUnavailable)
		}
		if p.Status >= 500 {
			log.Error().Err(err).Str("request_id", middleware.GetReqID(r.Context())).
				Str("path", r.URL.Path).Msg("request failed")
		}
		api.WriteProblem(w, p)
	}
}

// problemFor maps an error to the problem document clients see.
func problemFor(err error) *api.Problem {
	var p *api.Problem
	if errors.As(err, &p) {
		cp := *p
		return &cp
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return api.NewProblem(e.typ, e.status, e.title, err.Error())
		}
	}
	if queue.Unavailable(err) {
		return api.NewProblem(api.TypeUnavailable, http.StatusServiceUnavailable, "Service unavailable",
			"the job store cannot be reached; retry later")
	}
	return api.NewProblem(api.TypeInternal, http.StatusInternalServerError, "Internal error",
		"an unexpected error occurred; it has been logged")
}

// retryAfterUnavailable is the Retry-After of a 503: Redis outages that
// clients can ride out (a failover) last seconds.
const retryAfterUnavailable = "1"
