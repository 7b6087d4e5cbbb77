// Package web owns Offload's browser pages: the dashboard at / (queues,
// jobs, one job, workers, with live updates) and the interactive API
// reference at /docs, with their templates and static assets embedded in the
// binary. It reads and acts through the Source interface that it declares; it
// does not know Redis, the queue or the status store, and it serves none of
// the JSON API.
//
// Pages are server-rendered html/template documents. Live updates are htmx
// partials polled every two seconds; the vendored htmx and Swagger UI files in
// static/vendor are copied from pinned npm packages by `npm run vendor` and
// committed, so neither `go build` nor the server needs Node, and nothing is
// loaded from another origin: the pages are served with a Content Security
// Policy of script-src 'self'.
//
// State-changing requests (pause, resume, cancel, retry) are POSTs that must
// come from a same-origin page: see csrf in actions.go.
package web

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
)

// Source is what the dashboard reads and does. Its methods may return an
// *api.Problem (found with errors.As) to choose the status and the message the
// page shows (a 404 for an unknown job, a 409 for a finished one); any other
// error is logged and shown as a 500.
type Source interface {
	// Queues lists every queue with its counts and recent throughput.
	Queues(ctx context.Context) ([]api.Queue, error)
	// Jobs returns one page of jobs, newest first.
	Jobs(ctx context.Context, f JobFilter) (api.JobList, error)
	// Job returns the status document of job id and its arguments.
	Job(ctx context.Context, id string) (api.Job, json.RawMessage, error)
	// Workers lists the live worker processes.
	Workers(ctx context.Context) ([]api.Worker, error)
	// Cancel cancels job id.
	Cancel(ctx context.Context, id string) error
	// Retry runs failed or canceled job id again.
	Retry(ctx context.Context, id string) error
	// SetPaused pauses or resumes queue.
	SetPaused(ctx context.Context, queue string, paused bool) error
}

// JobFilter selects the jobs of a page of the job list. Zero fields match
// everything; Cursor is the NextCursor of the previous page.
type JobFilter struct {
	State  string
	Queue  string
	Kind   string
	Cursor string
	// Limit is the page size.
	Limit int
}

// Dashboard serves the dashboard and the docs page.
type Dashboard struct {
	src    Source
	log    zerolog.Logger
	now    func() time.Time
	pages  map[string]*template.Template
	static *assets
}

// New returns the dashboard over src. It fails only if an embedded template
// does not parse.
func New(src Source, log zerolog.Logger) (*Dashboard, error) {
	st, err := loadAssets()
	if err != nil {
		return nil, err
	}
	d := &Dashboard{src: src, log: log, now: time.Now, static: st}
	if d.pages, err = d.parseTemplates(); err != nil {
		return nil, fmt.Errorf("web templates: %w", err)
	}
	return d, nil
}

// Routes mounts the pages on r: GET / (overview), /ui/jobs (job list),
// /ui/jobs/{id} (one job), /docs (API reference), /static/* (assets), the
// /ui/partials/... fragments the pages poll, and the POST actions under /ui.
// r should not carry the API's OpenAPI validator.
func (d *Dashboard) Routes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(pageHeaders(dashboardCSP))
		r.Get("/", d.overview)
		r.Get("/ui/jobs", d.jobsPage)
		r.Get("/ui/jobs/{id}", d.jobPage)
		r.Get("/ui/partials/queues", d.queuesPartial)
		r.Get("/ui/partials/workers", d.workersPartial)
		r.Get("/ui/partials/jobs", d.jobsPartial)
		r.Get("/ui/partials/jobs/{id}", d.jobPartial)
		r.Group(func(r chi.Router) {
			r.Use(csrf(d.log))
			r.Post("/ui/queues/{name}/pause", d.setPaused(true))
			r.Post("/ui/queues/{name}/resume", d.setPaused(false))
			r.Post("/ui/jobs/{id}/cancel", d.cancel)
			r.Post("/ui/jobs/{id}/retry", d.retry)
		})
	})
	r.With(pageHeaders(docsCSP)).Get("/docs", d.docs)
	r.Get("/static/*", d.static.ServeHTTP)
	r.Head("/static/*", d.static.ServeHTTP)
}
