package tests

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/offload-dev/offload/api"
)

// cancelBound is how soon a running job must end canceled after DELETE
// (its handler sleeps for a minute).
const cancelBound = 10 * time.Second

func TestCancel(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)

	t.Run("queued", func(t *testing.T) {
		q := decode[api.Queue](t, s.post(t, "/v1/queues/default/pause"))
		if !q.Paused {
			t.Fatalf("pause answered %+v", q)
		}
		job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
		resp := s.del(t, "/v1/jobs/"+job.ID)
		expectStatus(t, resp, http.StatusOK)
		got := decode[api.Job](t, resp)
		if got.State != api.StateCanceled || !got.Done || got.Attempt != 0 || got.Error == nil {
			t.Errorf("DELETE of a queued job: state %s done %v attempt %d error %v", got.State, got.Done, got.Attempt, got.Error)
		}
		if got.Links.Retry == "" {
			t.Errorf("a canceled job has no links.retry")
		}
		if q := decode[api.Queue](t, s.post(t, "/v1/queues/default/resume")); q.Paused {
			t.Fatalf("resume answered %+v", q)
		}
		// It stays canceled: resuming the queue does not run it.
		after := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
		s.waitState(t, after.ID, api.StateSucceeded, jobTimeout)
		if got := decode[api.Job](t, s.get(t, "/v1/jobs/"+job.ID)); got.State != api.StateCanceled || got.Attempt != 0 {
			t.Errorf("the canceled job is now %s (attempt %d)", got.State, got.Attempt)
		}
		// Canceling it again conflicts.
		p := expectProblem(t, s.del(t, "/v1/jobs/"+job.ID), http.StatusConflict)
		if p.JobID != job.ID {
			t.Errorf("409 job_id %q, want %q", p.JobID, job.ID)
		}
	})

	t.Run("running", func(t *testing.T) {
		cancelRunning(t, s, s)
	})

	t.Run("finished", func(t *testing.T) {
		job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
		s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
		expectProblem(t, s.del(t, "/v1/jobs/"+job.ID), http.StatusConflict)
		if got := decode[api.Job](t, s.get(t, "/v1/jobs/"+job.ID)); got.State != api.StateSucceeded {
			t.Errorf("after a refused cancel the job is %s", got.State)
		}

		img := s.submit(t, map[string]any{"kind": "thumbnail",
			"args": map[string]any{"image": testPNG(t, 8, 8), "width": 4, "format": "png"}})
		s.waitSeeOther(t, img.ID, jobTimeout)
		// Never a 303 for DELETE, even for a job that created a resource.
		expectProblem(t, s.del(t, "/v1/jobs/"+img.ID), http.StatusConflict)
		expectStatus(t, s.get(t, "/v1/images/"+img.ID), http.StatusOK)
	})
}

// TestCancelAcrossProcesses cancels, through an API process, a handler that
// runs in one of two separate worker processes.
func TestCancelAcrossProcesses(t *testing.T) {
	t.Parallel()
	a, _ := startTiers(t, 2, nil)
	cancelRunning(t, a, a)
}

// cancelRunning submits a minute-long sleep through sub, waits until it
// runs, cancels it through del and expects it canceled well before the
// minute is over.
func cancelRunning(t *testing.T, sub, del *Server) {
	t.Helper()
	job := sub.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 60000}})
	running := sub.waitState(t, job.ID, api.StateRunning, jobTimeout)
	if running.Attempt != 1 || running.StartedAt == nil {
		t.Errorf("running document: attempt %d started_at %v", running.Attempt, running.StartedAt)
	}
	resp := del.del(t, "/v1/jobs/"+job.ID)
	expectStatus(t, resp, http.StatusAccepted)
	// The document is read after the cancel request: the worker may have
	// stopped the handler already.
	if got := decode[api.Job](t, resp); got.State != api.StateCanceling && got.State != api.StateCanceled ||
		got.Done != (got.State == api.StateCanceled) {
		t.Errorf("DELETE of a running job: state %s done %v, want canceling", got.State, got.Done)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 0 {
		t.Errorf("202 Retry-After %q", resp.Header.Get("Retry-After"))
	}
	// A second DELETE is 202 while the job is canceling, 409 once it is
	// canceled (it may be already).
	if again := del.del(t, "/v1/jobs/"+job.ID); again.StatusCode != http.StatusAccepted {
		expectProblem(t, again, http.StatusConflict)
	}
	got := del.waitState(t, job.ID, api.StateCanceled, cancelBound)
	if got.Error == nil || got.Error.Type == "" || !got.Done || got.FinishedAt == nil {
		t.Errorf("canceled document: done %v error %+v finished_at %v", got.Done, got.Error, got.FinishedAt)
	}
	if got.Attempt != 1 {
		t.Errorf("canceled on attempt %d, want 1", got.Attempt)
	}
	expectProblem(t, del.del(t, "/v1/jobs/"+job.ID), http.StatusConflict)
}
