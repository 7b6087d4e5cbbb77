package tests

import (
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/offload-dev/offload/api"
)

// listAll follows next_cursor from query (limit included) and returns every
// page.
func listAll(t *testing.T, s *Server, query url.Values) [][]api.Job {
	t.Helper()
	var pages [][]api.Job
	for range 100 {
		resp := s.get(t, "/v1/jobs?"+query.Encode())
		expectStatus(t, resp, http.StatusOK)
		page := decode[api.JobList](t, resp)
		pages = append(pages, page.Jobs)
		if page.NextCursor == "" {
			return pages
		}
		query.Set("cursor", page.NextCursor)
	}
	t.Fatalf("GET /v1/jobs?%s: more than 100 pages", query.Encode())
	return nil
}

func ids(jobs []api.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func TestList(t *testing.T) {
	t.Parallel()
	// The worker drains only "default": jobs of queue "parked" stay queued.
	s := startServer(t, map[string]string{"QUEUES": "default"})
	var parked []string // in submission order
	var reports []string
	for i := range 25 {
		kind, args := "sleep", map[string]any{"ms": 1}
		if i%5 == 2 {
			kind, args = "report", map[string]any{"csv": "k,v\na,1\n", "group_by": "k"}
		}
		job := s.submit(t, map[string]any{"kind": kind, "args": args, "queue": "parked"})
		parked = append(parked, job.ID)
		if kind == "report" {
			reports = append(reports, job.ID)
		}
	}
	canceled := []string{parked[3], parked[10], parked[17]}
	for _, id := range canceled {
		expectStatus(t, s.del(t, "/v1/jobs/"+id), http.StatusOK)
	}
	var done []string
	for range 3 {
		job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
		s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
		done = append(done, job.ID)
	}
	newestFirst := func(ids []string) []string {
		out := slices.Clone(ids)
		slices.Reverse(out)
		return out
	}

	t.Run("queue, paginated", func(t *testing.T) {
		pages := listAll(t, s, url.Values{"queue": {"parked"}, "limit": {"10"}})
		if len(pages) != 3 || len(pages[0]) != 10 || len(pages[1]) != 10 || len(pages[2]) != 5 {
			t.Errorf("page sizes %v, want 10, 10, 5", pageSizes(pages))
		}
		got := ids(slices.Concat(pages...))
		if want := newestFirst(parked); !slices.Equal(got, want) {
			t.Errorf("ids, newest first:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("every queue, paginated", func(t *testing.T) {
		pages := listAll(t, s, url.Values{"limit": {"10"}})
		all := slices.Concat(pages...)
		seen := map[string]int{}
		for _, j := range all {
			seen[j.ID]++
		}
		for _, id := range slices.Concat(parked, done) {
			if seen[id] != 1 {
				t.Errorf("job %s listed %d times", id, seen[id])
			}
		}
		if len(all) != len(parked)+len(done) {
			t.Errorf("listed %d jobs, want %d", len(all), len(parked)+len(done))
		}
		for i := 1; i < len(all); i++ {
			if all[i].CreatedAt.After(all[i-1].CreatedAt) {
				t.Errorf("not newest first: %s (%v) after %s (%v)", all[i].ID, all[i].CreatedAt, all[i-1].ID, all[i-1].CreatedAt)
			}
		}
		// The last jobs submitted (to default) are the first listed.
		if got := ids(all[:3]); !slices.Equal(got, newestFirst(done)) {
			t.Errorf("first listed %v, want %v", got, newestFirst(done))
		}
	})

	for _, tc := range []struct {
		name  string
		query url.Values
		want  []string
	}{
		{"state canceled", url.Values{"state": {"canceled"}}, newestFirst(canceled)},
		{"state succeeded", url.Values{"state": {"succeeded"}}, newestFirst(done)},
		{"state queued, queue parked", url.Values{"state": {"queued"}, "queue": {"parked"}, "limit": {"7"}},
			newestFirst(slices.DeleteFunc(slices.Clone(parked), func(id string) bool { return slices.Contains(canceled, id) }))},
		{"kind report", url.Values{"kind": {"report"}, "limit": {"2"}}, newestFirst(reports)},
		{"kind sleep, queue default", url.Values{"kind": {"sleep"}, "queue": {"default"}}, newestFirst(done)},
		{"queue nobody used", url.Values{"queue": {"empty"}}, nil},
		{"state running", url.Values{"state": {"running"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pages := listAll(t, s, tc.query)
			all := slices.Concat(pages...)
			if got := ids(all); !slices.Equal(got, tc.want) {
				t.Errorf("ids:\n got %v\nwant %v", got, tc.want)
			}
			for _, j := range all {
				if st := tc.query.Get("state"); st != "" && j.State != st {
					t.Errorf("state filter %s listed %s in state %s", st, j.ID, j.State)
				}
				if k := tc.query.Get("kind"); k != "" && j.Kind != k {
					t.Errorf("kind filter %s listed %s of kind %s", k, j.ID, j.Kind)
				}
			}
		})
	}
}

func pageSizes(pages [][]api.Job) []int {
	var out []int
	for _, p := range pages {
		out = append(out, len(p))
	}
	return out
}

func TestQueues(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"QUEUES": "default"})
	var parked []string
	for range 4 {
		parked = append(parked, s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}, "queue": "parked"}).ID)
	}
	expectStatus(t, s.del(t, "/v1/jobs/"+parked[0]), http.StatusOK)
	job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
	s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)

	resp := s.get(t, "/v1/queues")
	expectStatus(t, resp, http.StatusOK)
	list := decode[api.QueueList](t, resp)
	byName := map[string]api.Queue{}
	for _, q := range list.Queues {
		byName[q.Name] = q
	}
	if len(byName) != 2 {
		t.Errorf("queues %+v, want default and parked", list.Queues)
	}
	wantCounts := func(q api.Queue, want map[string]int) {
		t.Helper()
		for _, st := range api.States {
			if q.Counts[st] != want[st] {
				t.Errorf("queue %s: counts %v, want %v", q.Name, q.Counts, want)
				return
			}
		}
	}
	wantCounts(byName["parked"], map[string]int{"queued": 3, "canceled": 1})
	wantCounts(byName["default"], map[string]int{"succeeded": 1})
	for _, q := range list.Queues {
		if q.Paused {
			t.Errorf("queue %s paused before anyone paused it", q.Name)
		}
	}

	one := decode[api.Queue](t, s.get(t, "/v1/queues/parked"))
	wantCounts(one, map[string]int{"queued": 3, "canceled": 1})

	// Pause and resume are reflected everywhere.
	if q := decode[api.Queue](t, s.post(t, "/v1/queues/parked/pause")); !q.Paused || q.Name != "parked" {
		t.Errorf("pause answered %+v", q)
	}
	if q := decode[api.Queue](t, s.get(t, "/v1/queues/parked")); !q.Paused {
		t.Errorf("GET after pause: %+v", q)
	}
	if q := decode[api.Queue](t, s.post(t, "/v1/queues/parked/pause")); !q.Paused {
		t.Errorf("pausing twice: %+v", q)
	}
	for _, q := range decode[api.QueueList](t, s.get(t, "/v1/queues")).Queues {
		if q.Paused != (q.Name == "parked") {
			t.Errorf("GET /v1/queues after pause: %+v", q)
		}
	}
	if q := decode[api.Queue](t, s.post(t, "/v1/queues/parked/resume")); q.Paused {
		t.Errorf("resume answered %+v", q)
	}
	if q := decode[api.Queue](t, s.get(t, "/v1/queues/parked")); q.Paused {
		t.Errorf("GET after resume: %+v", q)
	}
	// Resuming a name no queue has is a 404, and creates no queue.
	expectProblem(t, s.post(t, "/v1/queues/neverused/resume"), http.StatusNotFound)
	expectStatus(t, s.get(t, "/v1/queues/neverused"), http.StatusNotFound)
	for _, q := range decode[api.QueueList](t, s.get(t, "/v1/queues")).Queues {
		if q.Name == "neverused" {
			t.Errorf("resuming an unknown name created queue %+v", q)
		}
	}
	// Pausing a queue nobody used yet is not an error.
	if q := decode[api.Queue](t, s.post(t, "/v1/queues/fresh/pause")); !q.Paused || q.Name != "fresh" {
		t.Errorf("pausing a new queue answered %+v", q)
	}

	// A paused queue holds its jobs; resuming runs them.
	expectStatus(t, s.post(t, "/v1/queues/default/pause"), http.StatusOK)
	held := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
	if got := decode[api.Queue](t, s.get(t, "/v1/queues/default")); got.Counts["queued"] != 1 {
		t.Errorf("paused default counts %v, want one queued", got.Counts)
	}
	expectStatus(t, s.post(t, "/v1/queues/default/resume"), http.StatusOK)
	s.waitState(t, held.ID, api.StateSucceeded, jobTimeout)
}
