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

	known sync.Map // queue name -> struct{}: already in QueuesKey
}

// New returns a Queue over rdb.
func New(rdb redis.UniversalClient, opts Options) *Queue {
	return &Queue{
		rdb:     rdb,
		opts:    opts.withDefaults(),
		entropy: ulid.Monotonic(rand.Reader, 0),
	}
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

// enqueueScript creates a job record and puts it in the ready or scheduled
// set, or, when another job holds its ordering key's turn, at the back of the
// key's lane (state queued, in no other set).
//
//	KEYS[1..8] state sets; 9 job; 10 ready; 11 scheduled; 12 jobs index;
//	     13 order holder; 14 order lane (of the job's ordering key, or of key "")
//	ARGV 1 id; 2 now ms; 3 run_at ms (0: now); 4 ready score; 5 wake channel;
//	     6 queue; 7 ordering key ('' for none; never with a run_at);
//	     8.. field/value pairs of the record
//	returns 0 exists, 1 queued (ready or in the lane), 2 scheduled
var enqueueScript = newScript(`
if redis.call('EXISTS', KEYS[9]) == 1 then return 0 end
local id, now, runat = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- A new record has no state to leave: write it and its index entries
-- directly (setstate would read back what this script just wrote).
if runat > tonumber(now) then
  redis.call('HSET', KEYS[9], 'created', now, 'updated', now, 'state', 'scheduled', 'run_at', runat, unpack(ARGV, 8))
  redis.call('ZADD', KEYS[12], now, id)
  redis.call('ZADD', KEYS[11], runat, id)
  redis.call('ZADD', KEYS[S.scheduled], now, id)
  return 2
end
redis.call('HSET', KEYS[9], 'created', now, 'updated', now, 'state', 'queued', unpack(ARGV, 8))
redis.call('ZADD', KEYS[12], now, id)
redis.call('ZADD', KEYS[S.queued], now, id)
if not gate(KEYS[9], id, ARGV[7], KEYS[13], KEYS[14]) then return 1 end
redis.call('ZADD', KEYS[10], ARGV[4], id)
if redis.call('ZCARD', KEYS[10]) == 1 then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return 1
`)

// Enqueue stores a new job and makes it runnable (or scheduled, or waiting
// for its ordering key's turn).
func (q *Queue) Enqueue(ctx context.Context, j NewJob) (Enqueued, error) {
	if !ValidQueueName(j.Queue) {
		return Enqueued{}, ErrBadQueueName
	}
	if j.ID == "" {
		j.ID = q.NewID(j.Queue)
	} else if name, ok := QueueOf(j.ID); !ok || name != j.Queue {
		return Enqueued{}, fmt.Errorf("enqueue %s: the id is not %q", j.ID, j.Queue+".{ulid}")
	}
	if j.OrderingKey != "" {
		if !ValidOrderingKey(j.OrderingKey) {
			return Enqueued{}, fmt.Errorf("enqueue %s: %w: want 1 to %d characters of UTF-8",
				j.ID, ErrBadOrderingKey, MaxOrderingKey)
		}
		if !j.RunAt.IsZero() {
			return Enqueued{}, fmt.Errorf("enqueue %s: %w: an ordered job cannot have a run_at",
				j.ID, ErrBadOrderingKey)
		}
	}
	if j.Version == 0 {
		j.Version = 1
	}
	if j.MaxAttempts <= 0 {
		j.MaxAttempts = 1
	}
	now := q.opts.Clock()
	nowMS := now.UnixMilli()
	var runAt int64
	if !j.RunAt.IsZero() && j.RunAt.After(now) {
		runAt = j.RunAt.UnixMilli()
	}
	if err := q.remember(ctx, j.Queue); err != nil {
		return Enqueued{}, err
	}
	keys := append(stateKeys(j.Queue), JobKey(j.Queue, j.ID), ReadyKey(j.Queue),
		ScheduledKey(j.Queue), JobsKey(j.Queue))
	keys = append(keys, orderKeys(j.Queue, j.OrderingKey)...)
	args := []any{j.ID, nowMS, runAt, readyScore(nowMS, j.Priority), ChannelWake, j.Queue, j.OrderingKey,
		"id", j.ID, "queue", j.Queue, "kind", j.Kind, "ver", j.Version, "args", j.Args,
		"prio", j.Priority, "attempt", 0, "max", j.MaxAttempts,
		"timeout", j.Timeout.Milliseconds(), "target_kind", j.Target}
	if j.Parent != "" {
		args = append(args, "parent", j.Parent)
	}
	if j.OrderingKey != "" {
		args = append(args, "okey", j.OrderingKey)
	}
	code, err := enqueueScript.Run(ctx, q.rdb, keys, args...).Int()
	if err != nil {
		return Enqueued{}, fmt.Errorf("enqueue %s: %w", j.ID, err)
	}
	e := Enqueued{ID: j.ID, State: "queued", CreatedAt: time.UnixMilli(nowMS)}
	switch code {
	case 0:
		return q.ownRetry(ctx, j, nowMS, runAt)
	case 2:
		e.State = "scheduled"
		e.RunAt = time.UnixMilli(runAt)
	}
	return e, nil
}

// ownRetry tells our own write, landed by a client retry after a lost reply
// (go-redis re-sends a script whose answer timed out), from a job that
// existed before: the record of our write carries this call's kind and
// creation time. Our own write is a success — the job is accepted and must
// not be answered with an error that invites a duplicate.
func (q *Queue) ownRetry(ctx context.Context, j NewJob, nowMS, runAt int64) (Enqueued, error) {
	v, err := q.rdb.HMGet(ctx, JobKey(j.Queue, j.ID), "kind", "created").Result()
	if err != nil {
		return Enqueued{}, fmt.Errorf("enqueue %s: %w", j.ID, err)
	}
	if kind, _ := v[0].(string); kind != j.Kind {
		return Enqueued{}, ErrExists
	}
	if created, _ := v[1].(string); created != strconv.FormatInt(nowMS, 10) {
		return Enqueued{}, ErrExists
	}
	e := Enqueued{ID: j.ID, State: "queued", CreatedAt: time.UnixMilli(nowMS)}
	if runAt > 0 {
		e.State, e.RunAt = "scheduled", time.UnixMilli(runAt)
	}
	return e, nil
}

// remember adds name to the set of queues once per process.
func (q *Queue) remember(ctx context.Context, name string) error {
	if _, ok := q.known.Load(name); ok {
		return nil
	}
	if err := q.rdb.SAdd(ctx, QueuesKey(), name).Err(); err != nil {
		return fmt.Errorf("register queue %s: %w", name, err)
	}
	q.known.Store(name, struct{}{})
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
