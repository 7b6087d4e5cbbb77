// Package statusstore owns what clients see of jobs: it reads job records,
// attempt histories, the resources jobs created and tombstones from Redis and
// turns them into status documents and pages of the job list. It writes
// nothing that changes a job's state: every transition is a script of package
// queue, whose key names it shares.
package statusstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
)

// Sentinel errors.
var (
	// ErrNotFound: no such job or resource.
	ErrNotFound = errors.New("not found")
	// ErrGone: the job existed but its retention ended.
	ErrGone = errors.New("gone")
)

// Store reads status documents.
type Store struct {
	rdb redis.UniversalClient
}

// New returns a Store over rdb.
func New(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// JobURL is the path of job id's status resource.
func JobURL(id string) string { return "/v1/jobs/" + id }

// Get returns the status document of job id, ErrGone while a tombstone
// remembers it, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (api.Job, error) {
	q, ok := queue.QueueOf(id)
	if !ok {
		return api.Job{}, ErrNotFound
	}
	var rec *redis.SliceCmd
	var errs *redis.StringSliceCmd
	var tomb *redis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HMGet(ctx, queue.JobKey(q, id), docFields...)
		errs = p.LRange(ctx, queue.ErrorsKey(q, id), 0, -1)
		tomb = p.Exists(ctx, queue.TombKey(q, id))
		return nil
	})
	if err != nil {
		return api.Job{}, fmt.Errorf("read job %s: %w", id, err)
	}
	h := fieldMap(rec.Val())
	if h["state"] == "" {
		if tomb.Val() > 0 {
			return api.Job{}, ErrGone
		}
		return api.Job{}, ErrNotFound
	}
	j := decode(id, q, h)
	for _, e := range errs.Val() {
		var ae api.AttemptError
		if json.Unmarshal([]byte(e), &ae) == nil {
			j.AttemptErrors = append(j.AttemptErrors, ae)
		}
	}
	return j, nil
}

// Args returns the stored arguments and their version of job id.
func (s *Store) Args(ctx context.Context, id string) (json.RawMessage, int, error) {
	q, ok := queue.QueueOf(id)
	if !ok {
		return nil, 0, ErrNotFound
	}
	v, err := s.rdb.HMGet(ctx, queue.JobKey(q, id), "args", "ver").Result()
	if err != nil {
		return nil, 0, fmt.Errorf("read args %s: %w", id, err)
	}
	a, _ := v[0].(string)
	if a == "" {
		return nil, 0, ErrNotFound
	}
	ver, _ := v[1].(string)
	n, _ := strconv.Atoi(ver)
	return json.RawMessage(a), max(n, 1), nil
}

// Target is the representation of a resource a job created.
type Target struct {
	ContentType string
	Body        []byte
	// Expires is when the job, and the resource with it, expire (zero when
	// the record does not say).
	Expires time.Time
}

// Target returns the representation of the resource job id created in
// collection ("images", "reports").
func (s *Store) Target(ctx context.Context, collection, id string) (Target, error) {
	q, ok := queue.QueueOf(id)
	if !ok {
		return Target{}, ErrNotFound
	}
	var job *redis.SliceCmd
	var t *redis.MapStringStringCmd
	var tomb *redis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		job = p.HMGet(ctx, queue.JobKey(q, id), "target_kind", "expires")
		t = p.HGetAll(ctx, queue.TargetKey(q, id))
		tomb = p.Exists(ctx, queue.TombKey(q, id))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Target{}, fmt.Errorf("read target %s: %w", id, err)
	}
	kind, _ := job.Val()[0].(string)
	if kind != collection || len(t.Val()) == 0 {
		if tomb.Val() > 0 {
			return Target{}, ErrGone
		}
		return Target{}, ErrNotFound
	}
	res := Target{ContentType: t.Val()["type"], Body: []byte(t.Val()["body"])}
	if exp, _ := job.Val()[1].(string); exp != "" {
		if ms, err := strconv.ParseInt(exp, 10, 64); err == nil {
			res.Expires = time.UnixMilli(ms)
		}
	}
	return res, nil
}

// docFields are the fields of a job record that the status document shows:
// never its args, which may be megabytes that a poll does not need.
var docFields = []string{"kind", "state", "prio", "attempt", "max", "created", "updated",
	"started", "finished", "run_at", "expires", "target", "okey", "pct", "msg", "ckpt", "result", "error", "parent", "children"}

// fieldMap pairs docFields with the values HMGET returned.
func fieldMap(vals []any) map[string]string {
	h := make(map[string]string, len(docFields))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			h[docFields[i]] = s
		}
	}
	return h
}

// decode turns the record of job id of queue q into a status document. A
// record leaves out what its key tells and fields at their defaults (see
// queue.Enqueue).
func decode(id, q string, h map[string]string) api.Job {
	updated := h["updated"]
	if updated == "" {
		updated = h["created"]
	}
	j := api.Job{
		ID:          id,
		Kind:        h["kind"],
		Queue:       q,
		State:       h["state"],
		Priority:    atoi(h["prio"]),
		Attempt:     atoi(h["attempt"]),
		MaxAttempts: max(atoi(h["max"]), 1),
		CreatedAt:   msTime(h["created"]),
		UpdatedAt:   msTime(updated),
		StartedAt:   optTime(h["started"]),
		FinishedAt:  optTime(h["finished"]),
		RunAt:       optTime(h["run_at"]),
		ExpiresAt:   optTime(h["expires"]),
		Target:      h["target"],
		OrderingKey: h["okey"],
	}
	j.Done = api.Terminal(j.State)
	if j.State != api.StateScheduled && j.State != api.StateRetrying {
		// The record keeps the last run_at; the document tells it only
		// while the job waits for it.
		j.RunAt = nil
	}
	j.Progress.Percent, _ = strconv.ParseFloat(h["pct"], 64)
	j.Progress.Message = h["msg"]
	if c := h["ckpt"]; c != "" && json.Valid([]byte(c)) {
		j.Checkpoint = json.RawMessage(c)
	}
	if j.State == api.StateSucceeded {
		if r := h["result"]; r != "" {
			j.Result = json.RawMessage(r)
		}
	}
	if e := h["error"]; e != "" && (j.State == api.StateFailed || j.State == api.StateCanceled || j.State == api.StateRetrying) {
		var p api.Problem
		if json.Unmarshal([]byte(e), &p) == nil {
			j.Error = &p
		}
	}
	j.Parent = h["parent"]
	if j.Parent != "" {
		j.Links.Parent = JobURL(j.Parent)
	}
	if c := h["children"]; c != "" {
		j.Children = strings.Split(c, ",")
	}
	j.Links.Self = JobURL(j.ID)
	if !j.Done {
		j.Links.Cancel = JobURL(j.ID)
	}
	if j.State == api.StateFailed || j.State == api.StateCanceled {
		j.Links.Retry = JobURL(j.ID) + "/retry"
	}
	if j.State == api.StateSucceeded && j.Target != "" {
		j.Links.Target = j.Target
	} else {
		j.Target = ""
	}
	return j
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func msTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

func optTime(s string) *time.Time {
	if s == "" {
		return nil
	}
	t := msTime(s)
	if t.IsZero() {
		return nil
	}
	return &t
}
