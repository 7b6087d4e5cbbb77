package queue

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// CancelResult says what a cancel did.
type CancelResult int

// Cancel results.
const (
	// Canceled: the job had not started; it is canceled now.
	Canceled CancelResult = 1
	// Canceling: the job is running; its worker is told to stop.
	Canceling CancelResult = 2
)

// cancelScript cancels a job: at once when it is not running, by request
// (state canceling, a message on the cancel channel) when it is.
//
//	KEYS 1..8 state sets; 9 tokens; 10 leased; 11 expiring; 12 job; 13 ready; 14 scheduled
//	ARGV 1 id; 2 now ms; 3 expires ms; 4 cancel channel; 5 done channel; 6 error document
//	returns 0 not found, 1 canceled, 2 canceling, 3 already finished
var cancelScript = newScript(`
local id, job, now = ARGV[1], KEYS[12], ARGV[2]
local st = redis.call('HGET', job, 'state')
if not st then return 0 end
if st == 'succeeded' or st == 'failed' or st == 'canceled' then return 3 end
if st == 'canceling' then return 2 end
if st == 'running' then
  redis.call('HSET', job, 'cancel', 1)
  setstate(job, id, 'canceling', now)
  redis.call('PUBLISH', ARGV[4], id)
  return 2
end
redis.call('ZREM', KEYS[13], id)
redis.call('ZREM', KEYS[14], id)
redis.call('ZREM', KEYS[10], id)
redis.call('HDEL', KEYS[9], id)
setstate(job, id, 'canceled', now)
redis.call('HSET', job, 'finished', now, 'expires', ARGV[3], 'cancel', 1, 'error', ARGV[6])
redis.call('ZADD', KEYS[11], ARGV[3], id)
redis.call('PUBLISH', ARGV[5], id)
return 1
`)

// CanceledDoc is the error document of a canceled job.
var CanceledDoc = ErrorDoc{Type: "https://offload.dev/problems/canceled", Title: "Job canceled", Status: 409,
	Detail: "the job was canceled by a client"}

// Cancel cancels job id. It returns ErrNotFound for an unknown job and
// ErrConflict for a finished one.
func (q *Queue) Cancel(ctx context.Context, id string) (CancelResult, error) {
	name, ok := QueueOf(id)
	if !ok {
		return 0, ErrNotFound
	}
	now := q.opts.Clock()
	doc, _ := json.Marshal(CanceledDoc)
	keys := append(stateKeys(name), TokensKey(name), LeasedKey(name), ExpiringKey(name),
		JobKey(name, id), ReadyKey(name), ScheduledKey(name))
	code, err := cancelScript.Run(ctx, q.rdb, keys, id, now.UnixMilli(),
		now.Add(q.opts.Retention).UnixMilli(), ChannelCancel, ChannelDone, doc).Int()
	if err != nil {
		return 0, fmt.Errorf("cancel %s: %w", id, err)
	}
	switch code {
	case 0:
		return 0, ErrNotFound
	case 3:
		return 0, ErrConflict
	}
	return CancelResult(code), nil
}

// retryScript makes a failed or canceled job runnable again.
//
//	KEYS 1..8 state sets; 9 expiring; 10 job; 11 ready
//	ARGV 1 id; 2 now ms; 3 wake channel; 4 queue
//	returns 0 not found, 1 queued, 3 not failed or canceled
var retryScript = newScript(`
local id, job, now = ARGV[1], KEYS[10], ARGV[2]
local st = redis.call('HGET', job, 'state')
if not st then return 0 end
if st ~= 'failed' and st ~= 'canceled' then return 3 end
redis.call('ZREM', KEYS[9], id)
redis.call('HDEL', job, 'finished', 'expires', 'error', 'result', 'cancel', 'run_at')
redis.call('HSET', job, 'attempt', 0, 'pct', 0)
local empty = redis.call('ZCARD', KEYS[11]) == 0
redis.call('ZADD', KEYS[11], readyscore(job, now), id)
setstate(job, id, 'queued', now)
if empty then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
`)

// Retry runs a failed or canceled job again with a fresh attempt budget. Its
// attempt history is kept.
func (q *Queue) Retry(ctx context.Context, id string) error {
	name, ok := QueueOf(id)
	if !ok {
		return ErrNotFound
	}
	keys := append(stateKeys(name), ExpiringKey(name), JobKey(name, id), ReadyKey(name))
	code, err := retryScript.Run(ctx, q.rdb, keys, id, q.opts.Clock().UnixMilli(), ChannelWake, name).Int()
	if err != nil {
		return fmt.Errorf("retry %s: %w", id, err)
	}
	switch code {
	case 0:
		return ErrNotFound
	case 3:
		return ErrConflict
	}
	return nil
}

// SetPaused pauses or resumes queue name. A paused queue accepts jobs but
// hands none to workers. Resuming wakes idle workers.
func (q *Queue) SetPaused(ctx context.Context, name string, paused bool) error {
	if !ValidQueueName(name) {
		return ErrBadQueueName
	}
	if err := q.remember(ctx, name); err != nil {
		return err
	}
	v := "0"
	if paused {
		v = "1"
	}
	if err := q.rdb.HSet(ctx, MetaKey(name), "paused", v).Err(); err != nil {
		return fmt.Errorf("pause %s: %w", name, err)
	}
	if !paused {
		return q.rdb.Publish(ctx, ChannelWake, name).Err()
	}
	return nil
}

// Stats are the counts of one queue.
type Stats struct {
	Name   string
	Paused bool
	Counts map[string]int
}

// Stats returns the per-state counts and pause flag of queue name in one
// round trip.
func (q *Queue) Stats(ctx context.Context, name string) (Stats, error) {
	var cmds []*redis.IntCmd
	var paused *redis.StringCmd
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range stateKeys(name) {
			cmds = append(cmds, p.ZCard(ctx, k))
		}
		paused = p.HGet(ctx, MetaKey(name), "paused")
		return nil
	})
	if err != nil && err != redis.Nil {
		return Stats{}, fmt.Errorf("stats %s: %w", name, err)
	}
	s := Stats{Name: name, Paused: paused.Val() == "1", Counts: map[string]int{}}
	for i, st := range stateNames {
		s.Counts[st] = int(cmds[i].Val())
	}
	return s, nil
}

// Backlog returns how many jobs of queue name are runnable and waiting.
func (q *Queue) Backlog(ctx context.Context, name string) (int64, error) {
	n, err := q.rdb.ZCard(ctx, ReadyKey(name)).Result()
	if err != nil {
		return 0, fmt.Errorf("backlog %s: %w", name, err)
	}
	return n, nil
}
