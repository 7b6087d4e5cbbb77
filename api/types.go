// Package api owns Offload's wire format: the job request, the status document,
// problem documents (RFC 9457), the embedded OpenAPI document and the middleware
// that enforces it on requests. It holds no behaviour beyond encoding and
// validation: storage lives in queue and statusstore, routing in handlers.
package api

import (
	"encoding/json"
	"time"
)

// Job states, as they appear in the status document's "state" field.
const (
	StateQueued    = "queued"
	StateScheduled = "scheduled"
	StateRunning   = "running"
	StateRetrying  = "retrying"
	StateCanceling = "canceling"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
	StateCanceled  = "canceled"
)

// States lists every job state in lifecycle order.
var States = []string{StateQueued, StateScheduled, StateRunning, StateRetrying,
	StateCanceling, StateSucceeded, StateFailed, StateCanceled}

// Terminal reports whether a job in state s is done and will not change again
// unless retried.
func Terminal(s string) bool {
	return s == StateSucceeded || s == StateFailed || s == StateCanceled
}

// JobRequest is the body of POST /v1/jobs.
type JobRequest struct {
	// Kind names a registered job kind.
	Kind string `json:"kind"`
	// Args are the kind's arguments, validated against the kind's schema.
	Args json.RawMessage `json:"args"`
	// Queue overrides the kind's default queue.
	Queue string `json:"queue,omitempty"`
	// Priority orders jobs inside one queue: higher runs first (0..9, default 0).
	Priority int `json:"priority,omitempty"`
	// RunAt schedules the job for a time in the future.
	RunAt *time.Time `json:"run_at,omitempty"`
	// Delay schedules the job this many seconds from now. A pointer, so
	// that "delay": 0 counts as given (it cannot be combined with RunAt or
	// OrderingKey either).
	Delay *float64 `json:"delay,omitempty"`
	// MaxAttempts overrides the kind's attempt limit (1..100).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Timeout bounds one attempt, in seconds (overrides the kind's).
	Timeout float64 `json:"timeout,omitempty"`
	// OrderingKey makes the job run after every job of its queue submitted
	// earlier with the same key has finished, one at a time (1..200
	// characters; scoped to the queue). It cannot be combined with RunAt or
	// Delay.
	OrderingKey string `json:"ordering_key,omitempty"`
}

// Job is the status document served at /v1/jobs/{id}.
type Job struct {
	ID            string          `json:"id"`
	Kind          string          `json:"kind"`
	Queue         string          `json:"queue"`
	State         string          `json:"state"`
	Done          bool            `json:"done"`
	Priority      int             `json:"priority"`
	OrderingKey   string          `json:"ordering_key,omitempty"`
	Attempt       int             `json:"attempt"`
	MaxAttempts   int             `json:"max_attempts"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
	StartedAt     *time.Time      `json:"started_at,omitempty"`
	FinishedAt    *time.Time      `json:"finished_at,omitempty"`
	RunAt         *time.Time      `json:"run_at,omitempty"`
	ExpiresAt     *time.Time      `json:"expires_at,omitempty"`
	Progress      Progress        `json:"progress"`
	Checkpoint    json.RawMessage `json:"checkpoint,omitempty"`
	Target        string          `json:"target,omitempty"`
	Result        json.RawMessage `json:"result,omitempty"`
	Error         *Problem        `json:"error,omitempty"`
	AttemptErrors []AttemptError  `json:"attempt_errors,omitempty"`
	// Parent is the id of the job whose handler enqueued this one.
	Parent string `json:"parent,omitempty"`
	// Children are the ids of the follow-up jobs this job enqueued.
	Children []string `json:"children,omitempty"`
	Links    Links    `json:"links"`
}

// Progress is what a running job last reported about itself.
type Progress struct {
	Percent float64 `json:"percent"`
	Message string  `json:"message,omitempty"`
}

// AttemptError records why one attempt failed.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// Links are the hypermedia links of a status document.
type Links struct {
	Self   string `json:"self"`
	Cancel string `json:"cancel,omitempty"`
	Retry  string `json:"retry,omitempty"`
	Target string `json:"target,omitempty"`
	Parent string `json:"parent,omitempty"`
}

// JobList is a page of GET /v1/jobs.
type JobList struct {
	Jobs       []Job  `json:"jobs"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// Queue describes one queue in GET /v1/queues.
type Queue struct {
	Name   string         `json:"name"`
	Paused bool           `json:"paused"`
	Counts map[string]int `json:"counts"`
	// Throughput counts finished jobs per minute over the last 15 minutes,
	// oldest first.
	Throughput []Throughput `json:"throughput,omitempty"`
}

// Throughput counts the jobs of a queue that finished in one minute.
type Throughput struct {
	At        time.Time `json:"at"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
}

// Worker describes a live worker process.
type Worker struct {
	ID          string    `json:"id"`
	Hostname    string    `json:"hostname"`
	PID         int       `json:"pid"`
	Queues      []string  `json:"queues"`
	Concurrency int       `json:"concurrency"`
	Running     int       `json:"running"`
	StartedAt   time.Time `json:"started_at"`
	LastSeen    time.Time `json:"last_seen"`
}

// WorkerList is the body of GET /v1/workers.
type WorkerList struct {
	Workers []Worker `json:"workers"`
}

// QueueList is the body of GET /v1/queues.
type QueueList struct {
	Queues []Queue `json:"queues"`
}

// Redirect is the short body of a 303 answer.
type Redirect struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Location string `json:"location"`
}

// Health is the body of /healthz and /readyz.
type Health struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// KindInfo is what the API needs to know about a job kind before it enqueues:
// where it goes, whether it creates a target, and how to check its arguments.
type KindInfo struct {
	Name        string
	Version     int
	Queue       string
	MaxAttempts int
	Timeout     time.Duration
	// Target is the collection of the resource the kind creates ("images"),
	// empty when it creates none. It is one of TargetCollections.
	Target string
}

// TargetCollections are the collections under which the API serves the
// resources jobs create, at /v1/{collection}/{job id}: "images" for any
// binary body, "reports" for JSON documents. Each is a route of
// openapi.yaml; a kind names one of them as its Target.
var TargetCollections = []string{"images", "reports"}
