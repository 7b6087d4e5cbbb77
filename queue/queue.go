// Package queue owns delivery: the Redis data model of queues and jobs, one Lua
// script per state transition, enqueue, leasing with fencing tokens, heartbeat,
// completion, retries with backoff, scheduling, cancellation, pause, ordering
// keys (one job at a time per key, in submission order) and the maintenance that promotes due jobs, reaps expired leases and expires finished
// jobs. It does not decide what a job does (workers) nor how it is shown to
// clients (statusstore, handlers).
//
// A job is leased, never popped: it stays in Redis, in the queue's leased set,
// until its worker acknowledges it. A worker killed at any instant loses
// nothing: its lease expires and the reaper returns the job to its queue.
package queue

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no such job (or no longer kept).
	ErrNotFound = errors.New("job not found")
	// ErrLeaseLost: the caller's lease was taken over or the job was canceled
	// before it started; the write was refused.
	ErrLeaseLost = errors.New("lease lost")
	// ErrConflict: the job is in a state that does not allow the operation.
	ErrConflict = errors.New("job state conflict")
	// ErrExists: a job with that id exists already.
	ErrExists = errors.New("job exists")
)

// RESP is the Redis protocol version Offload's clients speak unless told
// otherwise (a REDIS_URL with ?protocol=3): RESP2. Offload uses nothing of
// RESP3 (no client-side caching, no push notifications outside pub/sub,
// which works on both), and go-redis, on a RESP3 connection, peeks for
// pending push notifications before reading every reply: one more read
// system call per command, about 8 µs of client CPU per enqueue on the
// benchmark machine (docs/benchmarks-history.md, git 37167ee). Scripts see
// no difference: they answer in RESP2 unless they call redis.setresp.
const RESP = 2

// Protocol returns the protocol for a client whose options name p: p, or
// RESP when p is 0 (the options name none, as a REDIS_URL without
// ?protocol= parses).
func Protocol(p int) int {
	if p == 0 {
		return RESP
	}
	return p
}

// Options configure a Queue. The zero value is usable.
type Options struct {
	// Lease is how long a worker holds a job between heartbeats. Default 30s.
	Lease time.Duration
	// Retention is how long a finished job stays readable. Default 24h.
	Retention time.Duration
	// Tombstone is how long an expired job still answers 410 Gone. Default 7 days.
	Tombstone time.Duration
	// Clock returns the current time. Default time.Now.
	Clock func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.Tombstone <= 0 {
		o.Tombstone = 7 * 24 * time.Hour
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}

// Queue is the delivery engine over one Redis (single node or Cluster).
type Queue struct {
	rdb  redis.UniversalClient
	opts Options

	mu      sync.Mutex
	entropy *ulid.MonotonicEntropy

	known sync.Map // queue name -> []string, its enqueue script's first keys: already in QueuesKey

	enq batcher // groups concurrent Enqueue calls
}

// New returns a Queue over rdb.
func New(rdb redis.UniversalClient, opts Options) *Queue {
	q := &Queue{
		rdb:     rdb,
		opts:    opts.withDefaults(),
		entropy: ulid.Monotonic(rand.Reader, 0),
	}
	q.enq = batcher{run: q.enqueueBatch, maxFlight: 2, maxBatch: 256}
	return q
}

// Options returns the effective options.
func (q *Queue) Options() Options { return q.opts }

// Client returns the Redis client.
func (q *Queue) Client() redis.UniversalClient { return q.rdb }

// Now returns the queue's clock reading.
func (q *Queue) Now() time.Time { return q.opts.Clock() }

// NewID returns a fresh job id for queue name: "{queue}.{ULID}". The ULID is
// monotonic within a process, so ids sort in submission order.
func (q *Queue) NewID(queue string) string {
	q.mu.Lock()
	u := ulid.MustNew(ulid.Timestamp(q.opts.Clock()), q.entropy)
	q.mu.Unlock()
	return queue + "." + u.String()
}

// NewJob is a job to enqueue.
type NewJob struct {
	ID          string // optional; NewID(Queue) when empty
	Queue       string
	Kind        string
	Version     int
	Args        []byte
	Priority    int
	RunAt       time.Time // zero or past: runnable now
	MaxAttempts int
	Timeout     time.Duration
	// Target is the collection of the resource the kind creates, "" if none.
	Target string
	// Parent is the id of the job whose handler enqueued this one.
	Parent string `json:",omitempty"`
	// OrderingKey, when not empty, makes the job wait for every earlier job of
	// its queue with the same key to finish: jobs with one key run one at a
	// time, in submission order (the order their Enqueue calls reached
	// Redis), across all workers. The scope is the queue: one key in two
	// queues names two independent orders. Retries and requeues of a job keep
	// its turn; its turn passes on when it succeeds, fails for good or is
	// canceled. An ordered job cannot also have a RunAt (ErrBadOrderingKey).
	OrderingKey string
}

// Enqueued is what Enqueue stored.
type Enqueued struct {
	ID        string
	State     string
	CreatedAt time.Time
	RunAt     time.Time
}

// remember adds name to the set of queues once per process.
func (q *Queue) remember(ctx context.Context, name string) error {
	if _, ok := q.known.Load(name); ok {
		return nil
	}
	if err := q.rdb.SAdd(ctx, QueuesKey(), name).Err(); err != nil {
		return fmt.Errorf("register queue %s: %w", name, err)
	}
	q.known.Store(name, enqueueKeys(name))
	return nil
}

// Names returns every queue name ever used.
func (q *Queue) Names(ctx context.Context) ([]string, error) {
	names, err := q.rdb.SMembers(ctx, QueuesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return names, nil
}

// readyScore orders the ready set: higher priority first, then submission time.
func readyScore(nowMS int64, priority int) float64 {
	return float64(nowMS) - float64(priority)*1e13
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
