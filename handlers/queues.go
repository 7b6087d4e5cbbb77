package handlers

import (
	"context"
	"net/http"
	"slices"
	"sort"

	"github.com/go-chi/chi/v5"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
)

// queues handles GET /v1/queues.
func (a *service) queues(w http.ResponseWriter, r *http.Request) error {
	names, err := a.q.Names(r.Context())
	if err != nil {
		return err
	}
	sort.Strings(names)
	out := api.QueueList{Queues: make([]api.Queue, 0, len(names))}
	for _, n := range names {
		s, err := a.q.Stats(r.Context(), n)
		if err != nil {
			return err
		}
		out.Queues = append(out.Queues, wireQueue(s, nil))
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, out)
}

// queue handles GET /v1/queues/{name}.
func (a *service) queue(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	if err := a.knownQueue(r.Context(), name); err != nil {
		return err
	}
	s, err := a.q.Stats(r.Context(), name)
	if err != nil {
		return err
	}
	tp, err := a.q.Throughput(r.Context(), name, throughputMinutes)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, wireQueue(s, tp))
}

// knownQueue answers a 404 problem for a name no queue has.
func (a *service) knownQueue(ctx context.Context, name string) error {
	names, err := a.q.Names(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(names, name) {
		return api.NewProblem(api.TypeNotFound, http.StatusNotFound, "Not found", "no queue named "+name)
	}
	return nil
}

// pause handles POST /v1/queues/{name}/pause and /resume.
func (a *service) pause(paused bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		name := chi.URLParam(r, "name")
		if !queue.ValidQueueName(name) {
			p := api.NewProblem(api.TypeValidation, http.StatusBadRequest, "Invalid queue name", queue.ErrBadQueueName.Error())
			p.Errors = []api.FieldError{{Field: "name", Message: queue.ErrBadQueueName.Error()}}
			return p
		}
		if !paused {
			// Resuming a name no queue has would create that queue (it
			// would be listed from then on): a typo answers 404 instead.
			// Pausing one is allowed, to hold jobs before they arrive.
			if err := a.knownQueue(r.Context(), name); err != nil {
				return err
			}
		}
		if err := a.q.SetPaused(r.Context(), name, paused); err != nil {
			return err
		}
		s, err := a.q.Stats(r.Context(), name)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, wireQueue(s, nil))
	}
}

// throughputMinutes is how far back GET /v1/queues/{name} counts finished jobs.
const throughputMinutes = 15

func wireQueue(s queue.Stats, tp []api.Throughput) api.Queue {
	return api.Queue{Name: s.Name, Paused: s.Paused, Counts: s.Counts, Throughput: tp}
}

// workers handles GET /v1/workers: the live worker processes.
func (a *service) workers(w http.ResponseWriter, r *http.Request) error {
	ws, err := a.q.Workers(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, api.WorkerList{Workers: ws})
}
