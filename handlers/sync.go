package handlers

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/expectconn"
	"github.com/offload-dev/offload/queue"
)

// negotiation is what a client asked for with Expect and Prefer.
type negotiation struct {
	// expect is the status the client insists on (200, 201, 204), 0 for none.
	expect int
	// wait is how long to wait for the outcome; 0 answers 202 at once.
	wait time.Duration
	// applied is the Preference-Applied value, "" for none.
	applied []string
	// prefer is true when Prefer took part (Vary: Prefer matters).
	prefer bool
}

// negotiate reads Expect (strict: 417 when it cannot be met) and Prefer
// (lenient, RFC 7240) for a job of kind info. Expect wins over Prefer.
func (a *service) negotiate(r *http.Request, info api.KindInfo) (negotiation, error) {
	var n negotiation
	if e := expectation(r); e != "" {
		switch e {
		case "202-accepted":
			return n, nil
		case "200-ok":
			n.expect = http.StatusOK
		case "201-created":
			if info.Target == "" {
				return n, expectationFailed(fmt.Sprintf("kind %q creates no resource, so it cannot answer 201 Created; use 200-ok or 204-no-content", info.Name))
			}
			n.expect = http.StatusCreated
		case "204-no-content":
			n.expect = http.StatusNoContent
		default:
			return n, expectationFailed(fmt.Sprintf("unknown expectation %q; this server understands 200-ok, 201-created, 204-no-content and 202-accepted", e))
		}
		n.wait = a.cfg.SyncWaitMax
		return n, nil
	}
	for _, v := range r.Header.Values("Prefer") {
		for _, pref := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(pref), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			val = strings.Trim(strings.TrimSpace(strings.SplitN(val, ";", 2)[0]), `"`)
			switch name {
			case "respond-async":
				n.prefer = true
				n.applied = append(n.applied, "respond-async")
			case "wait":
				secs, err := strconv.ParseFloat(val, 64)
				if err != nil || secs < 0 {
					continue // unparseable preferences are ignored
				}
				n.prefer = true
				// Capped before the conversion, which a huge number (1e20)
				// would overflow.
				n.wait = time.Duration(min(secs, a.cfg.SyncWaitMax.Seconds()) * float64(time.Second))
			}
		}
	}
	if n.wait > 0 {
		// The wait in effect, in seconds: the client's own value, or the
		// cap that replaced it.
		n.applied = append(n.applied, "wait="+strconv.FormatFloat(n.wait.Seconds(), 'f', -1, 64))
	}
	return n, nil
}

// expectation returns the request's expectation, lower-cased, without the
// 100-continue that net/http has already honoured; a list of several other
// expectations comes back whole and is refused as unknown.
func expectation(r *http.Request) string {
	var rest []string
	for _, e := range strings.Split(expectconn.FromRequest(r), ",") {
		if e = strings.ToLower(strings.TrimSpace(e)); e != "" && e != "100-continue" {
			rest = append(rest, e)
		}
	}
	return strings.Join(rest, ", ")
}

func expectationFailed(detail string) *api.Problem {
	return api.NewProblem(api.TypeExpectation, http.StatusExpectationFailed, "Expectation failed", detail)
}

// admitSync refuses, before anything is enqueued, a synchronous job that
// cannot finish in time (submitted at now, waited for up to wait): it is
// scheduled to start after the wait, no live worker drains its queue, or
// the backlog ahead of it is over SyncMaxBacklog per unit of live
// concurrency.
func (a *service) admitSync(ctx context.Context, nj queue.NewJob, now time.Time, wait time.Duration) error {
	if nj.RunAt.After(now.Add(wait)) {
		return expectationFailed(fmt.Sprintf("the job is scheduled for %s, after the longest synchronous wait (%s); send it without Expect and poll",
			nj.RunAt.UTC().Format(time.RFC3339), wait))
	}
	name := nj.Queue
	workers, err := a.capacity.of(ctx, a.q, name)
	if err != nil {
		return err
	}
	if workers == 0 {
		return expectationFailed(fmt.Sprintf("no live worker drains queue %q, so the job cannot finish while you wait; send it without Expect and poll", name))
	}
	backlog, paused, err := a.q.Admission(ctx, name, nj.Priority)
	if err != nil {
		return err
	}
	if backlog > int64(workers*a.cfg.SyncMaxBacklog) {
		return expectationFailed(fmt.Sprintf("queue %q has %d jobs ahead for %d worker slots, over the synchronous limit of %d per slot; send it without Expect and poll",
			name, backlog, workers, a.cfg.SyncMaxBacklog))
	}
	if paused {
		return expectationFailed(fmt.Sprintf("queue %q is paused, so no worker drains it and the job cannot finish while you wait; send it without Expect and poll", name))
	}
	return nil
}

// answerSync answers a synchronous request once its job is done, or when the
// wait ran out.
func (a *service) answerSync(w http.ResponseWriter, r *http.Request, n negotiation, job api.Job, finished bool) error {
	h := w.Header()
	if !finished {
		if n.expect != 0 {
			// Admitted but not done in time: it keeps running, and the
			// client learns where to find it.
			h.Set("Link", "<"+job.Links.Self+`>; rel="monitor"`)
			h.Set("X-Job-Id", job.ID)
			p := expectationFailed(fmt.Sprintf("job %s did not finish within %s; it keeps running: poll its status resource", job.ID, n.wait))
			p.JobID = job.ID
			return p
		}
		cur, err := a.status.Get(r.Context(), job.ID)
		if err == nil {
			job = cur
		}
		return a.accepted(w, job)
	}
	done, err := a.status.Get(r.Context(), job.ID)
	if err != nil {
		return err
	}
	h.Set("X-Job-Id", done.ID)
	if done.State != api.StateSucceeded {
		p := &api.Problem{Type: api.TypeJobFailed, Title: "Job " + done.State, Status: http.StatusInternalServerError}
		if done.Error != nil {
			p = done.Error
		}
		p.JobID = done.ID
		if p.Status < 400 {
			p.Status = http.StatusInternalServerError
		}
		h.Set("Link", "<"+done.Links.Self+`>; rel="monitor"`)
		return p
	}
	status := n.expect
	if status == 0 {
		status = http.StatusOK
	}
	switch status {
	case http.StatusNoContent:
		h.Set("Content-Location", done.Links.Self)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.StatusCreated:
		h.Set("Location", done.Target)
		h.Set("Content-Location", done.Links.Self)
		return writeJSON(w, http.StatusCreated, done)
	}
	if done.Target != "" {
		col, _, _ := strings.Cut(strings.TrimPrefix(done.Target, "/v1/"), "/")
		tg, err := a.status.Target(r.Context(), col, done.ID)
		if err != nil {
			return err
		}
		h.Set("Content-Location", done.Target)
		h.Set("Content-Type", tg.ContentType)
		h.Set("Content-Length", strconv.Itoa(len(tg.Body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(tg.Body)
		return nil
	}
	h.Set("Content-Location", done.Links.Self)
	return writeJSON(w, http.StatusOK, done)
}

// capacity caches, per queue, the live worker slots, refreshed at most once a
// second so that admitting a synchronous job costs no listing of workers.
type capacity struct {
	mu      sync.Mutex
	at      time.Time
	byQueue map[string]int
}

func (c *capacity) of(ctx context.Context, q *queue.Queue, name string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > time.Second {
		ws, err := q.Workers(ctx)
		if err != nil {
			return 0, err
		}
		m := map[string]int{}
		for _, w := range ws {
			for _, qn := range w.Queues {
				m[qn] += w.Concurrency
			}
		}
		c.byQueue, c.at = m, time.Now()
	}
	return c.byQueue[name], nil
}
