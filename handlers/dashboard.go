package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
	"github.com/offload-dev/offload/web"
)

// dashboard is the web.Source of the dashboard: the queue and status store
// the JSON API uses, called in-process. Its errors are the problems the JSON
// API would answer (wrapping the cause, for the dashboard's log).
type dashboard struct{ a *service }

var _ web.Source = dashboard{}

// sourceErr turns err into the problem the JSON API would answer, still
// wrapping err.
func sourceErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", problemFor(err), err)
}

func (d dashboard) Queues(ctx context.Context) ([]api.Queue, error) {
	names, err := d.a.q.Names(ctx)
	if err != nil {
		return nil, sourceErr(err)
	}
	sort.Strings(names)
	out := make([]api.Queue, 0, len(names))
	for _, n := range names {
		s, err := d.a.q.Stats(ctx, n)
		if err != nil {
			return nil, sourceErr(err)
		}
		tp, err := d.a.q.Throughput(ctx, n, throughputMinutes)
		if err != nil {
			return nil, sourceErr(err)
		}
		out = append(out, wireQueue(s, tp))
	}
	return out, nil
}

func (d dashboard) Jobs(ctx context.Context, f web.JobFilter) (api.JobList, error) {
	page, err := d.a.status.List(ctx, statusstore.Filter{State: f.State, Queue: f.Queue, Kind: f.Kind,
		Cursor: f.Cursor, Limit: f.Limit})
	return page, sourceErr(err)
}

func (d dashboard) Job(ctx context.Context, id string) (api.Job, json.RawMessage, error) {
	job, err := d.a.status.Get(ctx, id)
	if err != nil {
		return api.Job{}, nil, sourceErr(err)
	}
	args, _, err := d.a.status.Args(ctx, id)
	if err != nil && !errors.Is(err, statusstore.ErrNotFound) {
		return api.Job{}, nil, sourceErr(err)
	}
	return job, args, nil
}

func (d dashboard) Workers(ctx context.Context) ([]api.Worker, error) {
	ws, err := d.a.q.Workers(ctx)
	return ws, sourceErr(err)
}

func (d dashboard) Cancel(ctx context.Context, id string) error {
	_, err := d.a.q.Cancel(ctx, id)
	if errors.Is(err, queue.ErrConflict) {
		return api.NewProblem(api.TypeConflict, http.StatusConflict, "Job already finished",
			"a finished job cannot be canceled")
	}
	return sourceErr(err)
}

func (d dashboard) Retry(ctx context.Context, id string) error {
	err := d.a.q.Retry(ctx, id)
	if errors.Is(err, queue.ErrConflict) {
		return api.NewProblem(api.TypeConflict, http.StatusConflict, "Job cannot be retried",
			"only a failed or canceled job can be retried")
	}
	return sourceErr(err)
}

func (d dashboard) SetPaused(ctx context.Context, name string, paused bool) error {
	if !queue.ValidQueueName(name) {
		return api.NewProblem(api.TypeValidation, http.StatusBadRequest, "Invalid queue name",
			queue.ErrBadQueueName.Error())
	}
	return sourceErr(d.a.q.SetPaused(ctx, name, paused))
}
