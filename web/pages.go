package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/offload-dev/offload/api"
)

// Page sizes of the job list.
const (
	jobsPageSize     = 25
	overviewJobs     = 10
	maxJobsPageSize  = 100
	workerStaleAfter = 30 * time.Second
)

// meta are the fields every whole page has.
type meta struct {
	Title string
	Nav   string // the active navigation entry
}

// flash is the outcome of an action, shown above the fragment it changed.
type flash struct {
	Tone string // "ok" or "bad"
	Text string
}

type queuesView struct {
	Fail   *failure
	Flash  *flash
	Queues []queueView
}

type queueView struct {
	Name   string
	Paused bool
	Total  int
	Counts []stateCount
	Chart  chart
	Rate   string // finished jobs per minute over the chart's window
}

type stateCount struct {
	State string
	N     int
	URL   string // the job list filtered on this queue and state
}

type workersView struct {
	Fail    *failure
	Workers []workerView
}

type workerView struct {
	api.Worker
	Stale bool // no heartbeat for workerStaleAfter
}

type jobsView struct {
	Fail     *failure
	Filter   JobFilter
	Jobs     []api.Job
	PollURL  string
	NextURL  string
	FirstURL string // set on pages after the first
	Compact  bool   // the overview's short list: no pager, a link to the list
}

type jobView struct {
	Fail       *failure
	Flash      *flash
	ID         string
	Job        api.Job
	Args       string
	Result     string
	Checkpoint string
	CanCancel  bool
	CanRetry   bool
	Timeline   []event
}

// event is one line of a job's timeline.
type event struct {
	Label string
	At    time.Time
}

// overview handles GET /: queues, workers and the latest jobs.
func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	v := struct {
		meta
		Queues  queuesView
		Workers workersView
		Jobs    jobsView
	}{meta: meta{Title: "Overview", Nav: "overview"}, Queues: d.queues(r), Workers: d.workers(r),
		Jobs: d.jobs(r, JobFilter{Limit: overviewJobs}, true)}
	d.render(w, r, http.StatusOK, "overview", "page", v)
}

// jobsPage handles GET /ui/jobs: the filtered, paginated job list.
func (d *Dashboard) jobsPage(w http.ResponseWriter, r *http.Request) {
	f := filterOf(r.URL.Query())
	v := struct {
		meta
		States []string
		Queues []string
		List   jobsView
	}{meta: meta{Title: "Jobs", Nav: "jobs"}, States: api.States, List: d.jobs(r, f, false)}
	if qs, err := d.src.Queues(r.Context()); err == nil {
		for _, q := range qs {
			v.Queues = append(v.Queues, q.Name)
		}
	}
	if f.Queue != "" && !slices.Contains(v.Queues, f.Queue) {
		v.Queues = append(v.Queues, f.Queue)
	}
	d.render(w, r, status(v.List.Fail), "jobs", "page", v)
}

// jobPage handles GET /ui/jobs/{id}.
func (d *Dashboard) jobPage(w http.ResponseWriter, r *http.Request) {
	jv := d.job(r, chi.URLParam(r, "id"))
	v := struct {
		meta
		Job jobView
	}{meta: meta{Title: "Job " + jv.ID, Nav: "jobs"}, Job: jv}
	d.render(w, r, status(jv.Fail), "job", "page", v)
}

// docs handles GET /docs: Swagger UI over /openapi.yaml.
func (d *Dashboard) docs(w http.ResponseWriter, r *http.Request) {
	d.render(w, r, http.StatusOK, "docs", "page", meta{Title: "API reference", Nav: "docs"})
}

// queuesPartial handles GET /ui/partials/queues.
func (d *Dashboard) queuesPartial(w http.ResponseWriter, r *http.Request) {
	v := d.queues(r)
	d.render(w, r, status(v.Fail), "overview", "queues", v)
}

// workersPartial handles GET /ui/partials/workers.
func (d *Dashboard) workersPartial(w http.ResponseWriter, r *http.Request) {
	v := d.workers(r)
	d.render(w, r, status(v.Fail), "overview", "workers", v)
}

// jobsPartial handles GET /ui/partials/jobs (the same query as /ui/jobs,
// plus compact=1 for the overview's list).
func (d *Dashboard) jobsPartial(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := d.jobs(r, filterOf(q), q.Get("compact") == "1")
	d.render(w, r, status(v.Fail), "overview", "jobs", v)
}

// jobPartial handles GET /ui/partials/jobs/{id}.
func (d *Dashboard) jobPartial(w http.ResponseWriter, r *http.Request) {
	v := d.job(r, chi.URLParam(r, "id"))
	d.render(w, r, status(v.Fail), "overview", "job", v)
}

func (d *Dashboard) queues(r *http.Request) queuesView {
	qs, err := d.src.Queues(r.Context())
	if err != nil {
		return queuesView{Fail: d.fail(r, "list the queues", err)}
	}
	var v queuesView
	for _, q := range qs {
		qv := queueView{Name: q.Name, Paused: q.Paused, Chart: throughputChart(q.Throughput)}
		for _, st := range api.States {
			n := q.Counts[st]
			qv.Total += n
			qv.Counts = append(qv.Counts, stateCount{State: st, N: n,
				URL: jobsURL("/ui/jobs", JobFilter{Queue: q.Name, State: st}, false)})
		}
		qv.Rate = perMinute(qv.Chart.Succeeded+qv.Chart.Failed, chartMinutes)
		v.Queues = append(v.Queues, qv)
	}
	return v
}

func (d *Dashboard) workers(r *http.Request) workersView {
	ws, err := d.src.Workers(r.Context())
	if err != nil {
		return workersView{Fail: d.fail(r, "list the workers", err)}
	}
	var v workersView
	now := d.now()
	for _, w := range ws {
		v.Workers = append(v.Workers, workerView{Worker: w, Stale: now.Sub(w.LastSeen) > workerStaleAfter})
	}
	return v
}

func (d *Dashboard) jobs(r *http.Request, f JobFilter, compact bool) jobsView {
	v := jobsView{Filter: f, Compact: compact, PollURL: jobsURL("/ui/partials/jobs", f, compact)}
	if f.Cursor != "" {
		first := f
		first.Cursor = ""
		v.FirstURL = jobsURL("/ui/jobs", first, false)
	}
	page, err := d.src.Jobs(r.Context(), f)
	if err != nil {
		v.Fail = d.fail(r, "list the jobs", err)
		return v
	}
	v.Jobs = page.Jobs
	if page.NextCursor != "" {
		next := f
		next.Cursor = page.NextCursor
		v.NextURL = jobsURL("/ui/jobs", next, false)
	}
	return v
}

func (d *Dashboard) job(r *http.Request, id string) jobView {
	v := jobView{ID: id}
	job, args, err := d.src.Job(r.Context(), id)
	if err != nil {
		v.Fail = d.fail(r, "read job "+id, err)
		return v
	}
	v.Job, v.Args = job, pretty(args)
	v.Result, v.Checkpoint = pretty(job.Result), pretty(job.Checkpoint)
	v.CanCancel = !job.Done && !api.Terminal(job.State) && job.State != api.StateCanceling
	v.CanRetry = job.State == api.StateFailed || job.State == api.StateCanceled
	v.Timeline = append(v.Timeline, event{"Created", job.CreatedAt})
	for _, e := range []struct {
		label string
		at    *time.Time
	}{{"Runs at", job.RunAt}, {"Started", job.StartedAt}, {"Finished", job.FinishedAt}, {"Expires", job.ExpiresAt}} {
		if e.at != nil && !e.at.IsZero() {
			v.Timeline = append(v.Timeline, event{e.label, *e.at})
		}
	}
	v.Timeline = append(v.Timeline, event{"Updated", job.UpdatedAt})
	return v
}

// filterOf reads a job filter from a query string.
func filterOf(q url.Values) JobFilter {
	f := JobFilter{State: q.Get("state"), Queue: q.Get("queue"), Kind: q.Get("kind"), Cursor: q.Get("cursor"),
		Limit: jobsPageSize}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		f.Limit = min(n, maxJobsPageSize)
	}
	return f
}

// jobsURL is base with f as its query.
func jobsURL(base string, f JobFilter, compact bool) string {
	q := url.Values{}
	for k, v := range map[string]string{"state": f.State, "queue": f.Queue, "kind": f.Kind, "cursor": f.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 && f.Limit != jobsPageSize {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if compact {
		q.Set("compact", "1")
	}
	if len(q) == 0 {
		return base
	}
	return base + "?" + q.Encode()
}
