package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/offload-dev/offload/api"
)

// fakeNow is the clock of every test: the fake's data is laid out around it.
var fakeNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// fakeSource is an in-memory Source with realistic data. It records the
// filters it was asked for and the actions it performed.
type fakeSource struct {
	mu      sync.Mutex
	queues  []api.Queue
	jobs    []api.Job // newest first
	args    map[string]json.RawMessage
	workers []api.Worker
	err     error // when set, every method fails with it

	filters []JobFilter
	actions []string // "cancel <id>", "retry <id>", "pause <queue>", "resume <queue>"
}

func newFakeSource() *fakeSource {
	f := &fakeSource{args: map[string]json.RawMessage{}}
	var tp []api.Throughput
	for i := range 15 {
		tp = append(tp, api.Throughput{At: fakeNow.Truncate(time.Minute).Add(time.Duration(i-14) * time.Minute),
			Succeeded: (i * 7) % 23, Failed: i % 4 / 3})
	}
	f.queues = []api.Queue{
		{Name: "default", Counts: map[string]int{"queued": 12, "scheduled": 3, "running": 4, "retrying": 1,
			"canceling": 0, "succeeded": 1234, "failed": 7, "canceled": 2}, Throughput: tp},
		{Name: "emails", Paused: true, Counts: map[string]int{"queued": 58, "succeeded": 91},
			Throughput: tp[10:]},
	}
	ts := func(d time.Duration) *time.Time { t := fakeNow.Add(d); return &t }
	kinds := []string{"sleep", "thumbnail", "report"}
	states := []string{api.StateRunning, api.StateSucceeded, api.StateFailed, api.StateQueued, api.StateCanceled}
	for i := range 60 {
		id := fmt.Sprintf("default.01JQ%022d", 60-i)
		if i%5 == 4 {
			id = fmt.Sprintf("emails.01JQ%022d", 60-i)
		}
		q, _, _ := cut(id)
		j := api.Job{ID: id, Kind: kinds[i%3], Queue: q, State: states[i%5], Attempt: 1, MaxAttempts: 3,
			CreatedAt: fakeNow.Add(-time.Duration(i) * time.Minute), UpdatedAt: fakeNow.Add(-time.Duration(i) * 30 * time.Second),
			Links: api.Links{Self: "/v1/jobs/" + id, Cancel: "/v1/jobs/" + id}}
		j.Done = api.Terminal(j.State)
		switch j.State {
		case api.StateRunning:
			j.StartedAt = ts(-20 * time.Second)
			j.Progress = api.Progress{Percent: 42, Message: "resized 42 of 100 images"}
		case api.StateSucceeded:
			j.StartedAt, j.FinishedAt, j.ExpiresAt = ts(-time.Minute), ts(-30*time.Second), ts(24*time.Hour)
			j.Progress.Percent = 100
			if j.Kind == "thumbnail" {
				j.Target = "/v1/images/" + id
				j.Links.Target = j.Target
			} else {
				j.Result = json.RawMessage(`{"slept_ms":1500,"echo":{"hello":"world"}}`)
			}
		case api.StateFailed:
			j.Attempt = 3
			j.StartedAt, j.FinishedAt = ts(-2*time.Minute), ts(-time.Minute)
			j.Error = &api.Problem{Type: api.TypeJobFailed, Title: "Job failed", Status: 500,
				Detail: "upstream answered 503 three times"}
			for a := 1; a <= 3; a++ {
				j.AttemptErrors = append(j.AttemptErrors, api.AttemptError{Attempt: a,
					At: fakeNow.Add(-time.Duration(4-a) * time.Minute), Error: "upstream answered 503 Service Unavailable"})
			}
		}
		f.jobs = append(f.jobs, j)
		f.args[id] = json.RawMessage(`{"ms":1500,"result":{"hello":"world"}}`)
	}
	f.workers = []api.Worker{
		{ID: "w-7f3a", Hostname: "worker-1.internal", PID: 4242, Queues: []string{"default", "emails"}, Concurrency: 8,
			Running: 3, StartedAt: fakeNow.Add(-3 * time.Hour), LastSeen: fakeNow.Add(-2 * time.Second)},
		{ID: "w-19bc", Hostname: "worker-2.internal", PID: 77, Queues: []string{"default"}, Concurrency: 4,
			Running: 0, StartedAt: fakeNow.Add(-time.Hour), LastSeen: fakeNow.Add(-2 * time.Minute)},
	}
	return f
}

func cut(id string) (string, string, bool) {
	for i := range id {
		if id[i] == '.' {
			return id[:i], id[i+1:], true
		}
	}
	return "", "", false
}

func (f *fakeSource) Queues(context.Context) ([]api.Queue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.queues), f.err
}

func (f *fakeSource) Jobs(_ context.Context, flt JobFilter) (api.JobList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filters = append(f.filters, flt)
	if f.err != nil {
		return api.JobList{}, f.err
	}
	start := 0
	if flt.Cursor != "" {
		n, err := strconv.Atoi(flt.Cursor)
		if err != nil {
			return api.JobList{}, &api.Problem{Type: api.TypeValidation, Status: http.StatusBadRequest,
				Title: "Invalid cursor", Detail: "malformed cursor"}
		}
		start = n
	}
	var out api.JobList
	for i := start; i < len(f.jobs); i++ {
		j := f.jobs[i]
		if (flt.State != "" && j.State != flt.State) || (flt.Queue != "" && j.Queue != flt.Queue) ||
			(flt.Kind != "" && j.Kind != flt.Kind) {
			continue
		}
		if len(out.Jobs) == flt.Limit {
			out.NextCursor = strconv.Itoa(i)
			break
		}
		out.Jobs = append(out.Jobs, j)
	}
	return out, nil
}

func (f *fakeSource) find(id string) (int, error) {
	for i, j := range f.jobs {
		if j.ID == id {
			return i, nil
		}
	}
	return -1, &api.Problem{Type: api.TypeNotFound, Status: http.StatusNotFound, Title: "Not found",
		Detail: "no job " + id}
}

func (f *fakeSource) Job(_ context.Context, id string) (api.Job, json.RawMessage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return api.Job{}, nil, f.err
	}
	i, err := f.find(id)
	if err != nil {
		return api.Job{}, nil, err
	}
	return f.jobs[i], f.args[id], nil
}

func (f *fakeSource) Workers(context.Context) ([]api.Worker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.workers), f.err
}

func (f *fakeSource) Cancel(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, "cancel "+id)
	i, err := f.find(id)
	if err != nil {
		return err
	}
	j := &f.jobs[i]
	switch {
	case j.Done:
		return &api.Problem{Type: api.TypeConflict, Status: http.StatusConflict, Title: "Job already finished",
			Detail: "a finished job cannot be canceled"}
	case j.State == api.StateRunning:
		j.State = api.StateCanceling
	default:
		j.State, j.Done = api.StateCanceled, true
	}
	return nil
}

func (f *fakeSource) Retry(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, "retry "+id)
	i, err := f.find(id)
	if err != nil {
		return err
	}
	j := &f.jobs[i]
	if j.State != api.StateFailed && j.State != api.StateCanceled {
		return &api.Problem{Type: api.TypeConflict, Status: http.StatusConflict, Title: "Job cannot be retried"}
	}
	j.State, j.Done, j.Attempt, j.Error = api.StateQueued, false, 0, nil
	return nil
}

func (f *fakeSource) SetPaused(_ context.Context, name string, paused bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	verb := "pause "
	if !paused {
		verb = "resume "
	}
	f.actions = append(f.actions, verb+name)
	if f.err != nil {
		return f.err
	}
	for i := range f.queues {
		if f.queues[i].Name == name {
			f.queues[i].Paused = paused
			return nil
		}
	}
	return &api.Problem{Type: api.TypeNotFound, Status: http.StatusNotFound, Title: "Not found", Detail: "no queue " + name}
}

func (f *fakeSource) recorded() ([]JobFilter, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.filters), slices.Clone(f.actions)
}

var errStoreDown = errors.New("dial tcp 10.0.0.7:6379: connect: connection refused")
