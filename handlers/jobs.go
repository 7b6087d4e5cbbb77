package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
)

// submit handles POST /v1/jobs: it validates the kind's arguments, enqueues
// the job and answers 202 with its status resource.
func (a *service) submit(w http.ResponseWriter, r *http.Request) error {
	var req api.JobRequest
	// Behind the validator the body is known to be one JSON value that
	// matches the schema, and its generic decoding is at hand for the kind's
	// schema; without it (a router mounted otherwise), it is checked here.
	body, validated := api.ValidatedBody(r)
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return api.NewProblem(api.TypeMalformed, http.StatusBadRequest, "Unreadable request body", err.Error())
	}
	if !validated {
		// The validator refuses a body that is not UTF-8 (encoding/json
		// would take it, turning each bad byte into U+FFFD).
		if p := api.NotUTF8(raw); p != nil {
			return p
		}
	}
	if err := decodeRequest(raw, &req); err != nil {
		return err
	}
	info, ok := a.catalog.Lookup(req.Kind)
	if !ok {
		return api.ValidationProblem(fmt.Sprintf("unknown kind %q", req.Kind),
			api.FieldError{Field: "/kind", Message: fmt.Sprintf("unknown kind %q", req.Kind)})
	}
	var args any
	if m, ok := body.(map[string]any); ok {
		args = m["args"]
	} else if len(req.Args) > 0 {
		if err := json.Unmarshal(req.Args, &args); err != nil {
			return api.NewProblem(api.TypeMalformed, http.StatusBadRequest, "Malformed JSON", err.Error())
		}
	}
	if args == nil {
		req.Args, args = json.RawMessage("{}"), map[string]any{}
	}
	if errs := a.catalog.ValidateValue(req.Kind, args); len(errs) > 0 {
		return api.ValidationProblem(fmt.Sprintf("args do not match the schema of kind %q", req.Kind), errs...)
	}
	var errs []api.FieldError
	if req.Args, errs = a.catalog.DecodeArgs(req.Kind, req.Args); len(errs) > 0 {
		return api.ValidationProblem(fmt.Sprintf("args do not decode as kind %q takes them", req.Kind), errs...)
	}
	nj := queue.NewJob{
		Queue: info.Queue, Kind: info.Name, Version: info.Version, Args: compact(req.Args),
		Priority: req.Priority, MaxAttempts: info.MaxAttempts, Timeout: info.Timeout, Target: info.Target,
		OrderingKey: req.OrderingKey,
	}
	if req.Queue != "" {
		nj.Queue = req.Queue
	}
	if req.MaxAttempts > 0 {
		nj.MaxAttempts = req.MaxAttempts
	}
	if req.Timeout > 0 {
		nj.Timeout = seconds(req.Timeout)
	}
	if req.OrderingKey != "" {
		// Submission order and a schedule would conflict: a job scheduled
		// for later would hold up every later job of its key.
		if req.RunAt != nil || req.Delay != nil {
			return api.ValidationProblem("an ordered job cannot be scheduled",
				api.FieldError{Field: "/ordering_key", Message: "cannot be combined with run_at or delay"})
		}
		if !queue.ValidOrderingKey(req.OrderingKey) {
			return api.ValidationProblem("bad ordering key", api.FieldError{Field: "/ordering_key",
				Message: fmt.Sprintf("must be 1 to %d characters", queue.MaxOrderingKey)})
		}
	}
	now := a.q.Now()
	switch {
	case req.RunAt != nil && req.Delay != nil:
		return api.ValidationProblem("give run_at or delay, not both",
			api.FieldError{Field: "/delay", Message: "cannot be combined with run_at"})
	case req.RunAt != nil:
		if req.RunAt.After(now.Add(maxSchedule)) {
			return api.ValidationProblem("run_at is too far ahead", api.FieldError{Field: "/run_at",
				Message: "must be at most one year (31536000 seconds) from now, as delay"})
		}
		nj.RunAt = *req.RunAt
	case req.Delay != nil && *req.Delay > 0:
		nj.RunAt = now.Add(seconds(*req.Delay))
	}
	idemKey, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	enqueued, settle := false, func() {}
	if idemKey != "" {
		scope, fp := clientScope(r), fingerprint(req)
		nj.ID = a.q.NewID(nj.Queue)
		c, err := a.status.ClaimKey(r.Context(), scope, idemKey, fp, nj.ID)
		if err != nil {
			return err
		}
		if !c.Claimed {
			return a.replay(w, r, c, fp)
		}
		// This request owns the key: it is settled once the job is
		// enqueued, and released if nothing was, so that a retry can claim it.
		defer func() {
			if !enqueued {
				if err := a.status.ReleaseKey(context.WithoutCancel(r.Context()), scope, idemKey); err != nil {
					a.log.Error().Err(err).Msg("release idempotency key")
				}
			}
		}()
		settle = func() {
			if err := a.status.SettleKey(context.WithoutCancel(r.Context()), scope, idemKey, a.cfg.IdempotencyTTL); err != nil {
				a.log.Error().Err(err).Str("job_id", nj.ID).Msg("settle idempotency key")
			}
		}
	}
	neg, err := a.negotiate(r, info)
	if err != nil {
		return err
	}
	if neg.prefer {
		w.Header().Add("Vary", "Prefer")
	}
	if len(neg.applied) > 0 {
		w.Header().Set("Preference-Applied", strings.Join(neg.applied, ", "))
	}
	var done <-chan struct{}
	if neg.wait > 0 {
		if a.cfg.Waiter == nil {
			if neg.expect != 0 {
				return expectationFailed("this server does not answer synchronously")
			}
			neg.wait = 0
		} else {
			// Watch before enqueueing, so that the completion cannot be missed.
			if nj.ID == "" {
				nj.ID = a.q.NewID(nj.Queue)
			}
			var stop func()
			done, stop = a.cfg.Waiter.Watch(nj.ID)
			defer stop()
		}
	}
	e, handedOff, err := a.handoff(r.Context(), nj, done != nil)
	if err != nil {
		return err
	}
	if !handedOff {
		if done != nil && neg.expect != 0 {
			if err := a.admitSync(r.Context(), nj, now, neg.wait); err != nil {
				return err
			}
		}
		if e, err = a.q.Enqueue(r.Context(), nj); err != nil {
			return err
		}
	}
	enqueued = true
	settle()
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.Enqueued(nj.Kind, nj.Queue)
	}
	job := api.Job{
		ID: e.ID, Kind: nj.Kind, Queue: nj.Queue, State: e.State, Priority: nj.Priority,
		OrderingKey: nj.OrderingKey, MaxAttempts: nj.MaxAttempts, CreatedAt: e.CreatedAt.UTC(), UpdatedAt: e.CreatedAt.UTC(),
		Links: api.Links{Self: statusstore.JobURL(e.ID), Cancel: statusstore.JobURL(e.ID)},
	}
	if !e.RunAt.IsZero() {
		t := e.RunAt.UTC()
		job.RunAt = &t
	}
	if done == nil {
		return a.accepted(w, job)
	}
	ctx, cancel := context.WithTimeout(r.Context(), neg.wait)
	defer cancel()
	finished := a.status.Wait(ctx, job.ID, done)
	if r.Context().Err() != nil {
		return nil // the client left; the job goes on
	}
	return a.answerSync(w, r, neg, job, finished)
}

// maxSchedule is how far ahead a job may be scheduled: delay's maximum in
// openapi.yaml, which run_at shares.
const maxSchedule = 365 * 24 * time.Hour

// decodeRequest decodes the body of POST /v1/jobs into req (json.Unmarshal
// refuses trailing data, for a router mounted without the validator). A
// number the schema counts as an integer but written with a fraction or an
// exponent (priority 9.0) is decoded as the integer it is.
func decodeRequest(raw []byte, req *api.JobRequest) error {
	_, err := api.DecodeIntegral(raw, func(doc []byte) error {
		*req = api.JobRequest{}
		return json.Unmarshal(doc, req)
	})
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return api.ValidationProblem("the request does not match the schema", api.DecodeProblem(te, ""))
	}
	// run_at is the request's one time: a date-time the validator's pattern
	// takes but Go's time cannot hold (a leap second, 23:59:60).
	var pe *time.ParseError
	if errors.As(err, &pe) {
		why := strings.TrimPrefix(pe.Message, ": ")
		if why == "" {
			why = pe.Error()
		}
		return api.ValidationProblem("run_at is not a time this server can schedule", api.FieldError{Field: "/run_at",
			Message: "not a date-time this server can represent: " + why + " (a leap second, :60, is not supported)"})
	}
	if err != nil {
		return api.NewProblem(api.TypeMalformed, http.StatusBadRequest, "Malformed JSON", err.Error())
	}
	return nil
}

// handoff stores a job that a request waits for already leased to a free
// worker slot of this process, and starts it, when its queue is idle
// (queue.Handoff, which also declines ordered and scheduled jobs): the wait
// is then one round trip to store it and one to record its outcome. ok is
// false, with nothing stored, when the job must go through its queue instead.
func (a *service) handoff(ctx context.Context, nj queue.NewJob, waiting bool) (queue.Enqueued, bool, error) {
	if !waiting || a.cfg.Handoff == nil {
		return queue.Enqueued{}, false, nil
	}
	run, release, ok := a.cfg.Handoff(nj.Queue)
	if !ok {
		return queue.Enqueued{}, false, nil
	}
	e, d, err := a.q.Handoff(ctx, nj)
	switch {
	case errors.Is(err, queue.ErrDeclined):
		release()
		return queue.Enqueued{}, false, nil
	case err != nil:
		release()
		return queue.Enqueued{}, false, err
	case d == nil:
		release() // stored, delivery unknown: it runs once its lease runs out
		return e, true, nil
	}
	run(d)
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.HandedOff(nj.Kind, nj.Queue)
	}
	return e, true, nil
}

// accepted answers 202 with job's status resource.
func (a *service) accepted(w http.ResponseWriter, job api.Job) error {
	h := w.Header()
	h.Set("Location", job.Links.Self)
	h.Set("Content-Location", job.Links.Self)
	h.Set("X-Job-Id", job.ID)
	h.Set("Retry-After", retryAfter(job, a.q.Now()))
	h.Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusAccepted, job)
}

// get handles GET /v1/jobs/{id}: the status resource.
func (a *service) get(w http.ResponseWriter, r *http.Request) error {
	job, err := a.status.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("X-Job-Id", job.ID)
	if job.State == api.StateSucceeded && job.Target != "" {
		body, _ := json.Marshal(api.Redirect{ID: job.ID, State: job.State, Location: job.Target})
		// A 303 is not a 2xx: preconditions do not apply to it (RFC 9110
		// §13.2.1), so If-None-Match never turns it into a 304.
		setETag(w, body)
		h.Set("Location", job.Target)
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusSeeOther)
		_, _ = w.Write(append(body, '\n'))
		return nil
	}
	body, err := json.Marshal(job)
	if err != nil {
		return err
	}
	if job.Done {
		h.Set("Cache-Control", "no-cache")
	} else {
		h.Set("Cache-Control", "no-store")
		h.Set("Retry-After", retryAfter(job, a.q.Now()))
	}
	if notModified(w, r, body) {
		return nil
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// setETag sets the ETag of body and returns it.
func setETag(w http.ResponseWriter, body []byte) string {
	f := fnv.New64a()
	_, _ = f.Write(body)
	etag := `"` + strconv.FormatUint(f.Sum64(), 36) + `"`
	w.Header().Set("ETag", etag)
	return etag
}

// notModified sets the ETag of body, a 200's, and answers 304 when the
// client has it.
func notModified(w http.ResponseWriter, r *http.Request, body []byte) bool {
	etag := setETag(w, body)
	// If-None-Match is a list of entity tags, compared weakly (RFC 9110
	// §13.1.2), over one field line or several.
	for _, v := range r.Header.Values("If-None-Match") {
		for _, tag := range strings.Split(v, ",") {
			if tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/"); tag == etag || tag == "*" {
				w.WriteHeader(http.StatusNotModified)
				return true
			}
		}
	}
	return false
}

// cancel handles DELETE /v1/jobs/{id}.
func (a *service) cancel(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	res, err := a.q.Cancel(r.Context(), id)
	if err != nil {
		if err == queue.ErrNotFound {
			// Tell an expired job (410) from an unknown one (404).
			_, err = a.status.Get(r.Context(), id)
			if err == nil {
				err = queue.ErrNotFound
			}
		}
		if err == queue.ErrConflict {
			p := api.NewProblem(api.TypeConflict, http.StatusConflict, "Job already finished",
				"a finished job cannot be canceled; POST .../retry runs a failed or canceled job again")
			p.JobID = id
			return p
		}
		return err
	}
	job, err := a.status.Get(r.Context(), id)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if res == queue.Canceling {
		status = http.StatusAccepted
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("X-Job-Id", id)
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, status, job)
}

// retry handles POST /v1/jobs/{id}/retry.
func (a *service) retry(w http.ResponseWriter, r *http.Request) error {
	id := chi.URLParam(r, "id")
	if err := a.q.Retry(r.Context(), id); err != nil {
		if err == queue.ErrConflict {
			p := api.NewProblem(api.TypeConflict, http.StatusConflict, "Job cannot be retried",
				"only a failed or canceled job can be retried")
			p.JobID = id
			return p
		}
		if err == queue.ErrNotFound {
			if _, gerr := a.status.Get(r.Context(), id); gerr != nil {
				return gerr
			}
		}
		return err
	}
	job, err := a.status.Get(r.Context(), id)
	if err != nil {
		return err
	}
	return a.accepted(w, job)
}

// list handles GET /v1/jobs.
func (a *service) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	// Each filter takes one value: a repeated one (state=queued&state=failed)
	// is refused rather than cut to its first value, which a client meaning
	// "either" would take for the whole answer.
	for _, name := range []string{"state", "queue", "kind", "cursor", "limit"} {
		if len(q[name]) > 1 {
			p := api.NewProblem(api.TypeValidation, http.StatusBadRequest, "Invalid request parameters",
				fmt.Sprintf("the %s parameter is given %d times; it takes one value", name, len(q[name])))
			p.Errors = []api.FieldError{{Field: name, Message: "given more than once; give it once (one value)"}}
			return p
		}
	}
	f := statusstore.Filter{State: q.Get("state"), Queue: q.Get("queue"), Kind: q.Get("kind"), Cursor: q.Get("cursor")}
	if l := q.Get("limit"); l != "" {
		f.Limit, _ = strconv.Atoi(l)
	}
	page, err := a.status.List(r.Context(), f)
	if errors.Is(err, statusstore.ErrBadCursor) {
		p := api.NewProblem(api.TypeValidation, http.StatusBadRequest, "Invalid request parameters",
			"the cursor was not produced by this API")
		p.Errors = []api.FieldError{{Field: "cursor", Message: "malformed cursor; use next_cursor from a previous page"}}
		return p
	}
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, page)
}

// retryAfter is how many seconds until polling job is worth it.
func retryAfter(job api.Job, now time.Time) string {
	if job.RunAt != nil && (job.State == api.StateScheduled || job.State == api.StateRetrying) {
		if s := math.Ceil(job.RunAt.Sub(now).Seconds()); s > 1 {
			return strconv.Itoa(int(s))
		}
	}
	return "1"
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// compact strips insignificant white space from raw JSON.
func compact(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}
