package queue

import (
	"context"
	"encoding/json"
	"errors"
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
// (state canceling, a message on the cancel channel) when it is. A job
// canceled at once that held its ordering key's turn passes it on; one that
// waited in the key's lane leaves the lane (the holder is unaffected).
//
//	KEYS 1..8 state sets; 9 tokens; 10 leased; 11 expiring; 12 job; 13 ready;
//	     14 scheduled; 15 order holder; 16 order lane
//	ARGV 1 id; 2 now ms; 3 expires ms; 4 cancel channel; 5 done channel;
//	     6 error document; 7 wake channel; 8 queue; 9 ordering key ('' for none)
//	returns 0 not found, 1 canceled, 2 canceling, 3 already finished,
//	        4 ARGV 9 is not the job's ordering key (read it again)
var cancelScript = newScript(`
local id, job, now = ARGV[1], KEYS[12], ARGV[2]
local st = redis.call('HGET', job, 'state')
if not st then return 0 end
if (redis.call('HGET', job, 'okey') or '') ~= ARGV[9] then return 4 end
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
untoken(KEYS[9])
setstate(job, id, 'canceled', now)
redis.call('HSET', job, 'finished', now, 'expires', ARGV[3], 'cancel', 1, 'error', ARGV[6])
redis.call('ZADD', KEYS[11], ARGV[3], id)
if ARGV[9] ~= '' then
  if redis.call('GET', KEYS[15]) == id then
    release(id, ARGV[9], KEYS[15], KEYS[16], KEYS[13], now, ARGV[7], ARGV[8])
  else
    redis.call('LREM', KEYS[16], 1, laneentry(job, id))
  end
end
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
	var code int
	// The first pass reads the job's ordering key; a second is needed only
	// when the job was created (with a key) between the read and the script.
	for range 2 {
		okey, err := q.orderingKey(ctx, name, id)
		if err != nil {
			return 0, fmt.Errorf("cancel %s: %w", id, err)
		}
		now := q.opts.Clock()
		doc, _ := json.Marshal(CanceledDoc)
		keys := append(stateKeys(name), TokensKey(name), LeasedKey(name), ExpiringKey(name),
			JobKey(name, id), ReadyKey(name), ScheduledKey(name))
		keys = append(keys, orderKeys(name, okey)...)
		code, err = cancelScript.Run(ctx, q.rdb, keys, id, now.UnixMilli(),
			now.Add(q.opts.Retention).UnixMilli(), ChannelCancel, ChannelDone, doc,
			ChannelWake, name, okey).Int()
		if err != nil {
			return 0, fmt.Errorf("cancel %s: %w", id, err)
		}
		if code != 4 {
			break
		}
	}
	switch code {
	case 0:
		return 0, ErrNotFound
	case 3:
		return 0, ErrConflict
	case 4:
		return 0, fmt.Errorf("cancel %s: its ordering key keeps changing", id)
	}
	return CancelResult(code), nil
}

// orderingKey reads the ordering key of job id of queue name ("" for none or
// for an unknown job), so that a script can name the key's holder and lane.
// A job's key never changes; the scripts still check it (a job created with
// a caller-chosen id after the read would have one).
func (q *Queue) orderingKey(ctx context.Context, name, id string) (string, error) {
	okey, err := q.rdb.HGet(ctx, JobKey(name, id), "okey").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return okey, err
}

// retryScript makes a failed or canceled job runnable again. A job with an
// ordering key goes through its key's gate like a new one: it takes the
// key's turn if it is free, else it waits at the back of the key's lane.
//
//	KEYS 1..8 state sets; 9 expiring; 10 job; 11 ready; 12 order holder; 13 order lane
//	ARGV 1 id; 2 now ms; 3 wake channel; 4 queue; 5 ordering key ('' for none)
//	returns 0 not found, 1 queued, 3 not failed or canceled,
//	        4 ARGV 5 is not the job's ordering key (read it again)
var retryScript = newScript(`
local id, job, now = ARGV[1], KEYS[10], ARGV[2]
local st = redis.call('HGET', job, 'state')
if not st then return 0 end
if (redis.call('HGET', job, 'okey') or '') ~= ARGV[5] then return 4 end
if st ~= 'failed' and st ~= 'canceled' then return 3 end
redis.call('ZREM', KEYS[9], id)
redis.call('HDEL', job, 'finished', 'expires', 'error', 'result', 'cancel', 'run_at', 'started', 'msg')
redis.call('HSET', job, 'attempt', 0, 'pct', 0)
setstate(job, id, 'queued', now)
if not gate(job, id, ARGV[5], KEYS[12], KEYS[13]) then return 1 end
local empty = redis.call('ZCARD', KEYS[11]) == 0
redis.call('ZADD', KEYS[11], readyscore(job, now), id)
if empty then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
`)

// Retry runs a failed or canceled job again with a fresh attempt budget. Its
// attempt history is kept. A job with an ordering key takes its key's turn
// if it is free and otherwise waits behind every job of the key queued
// before the retry.
func (q *Queue) Retry(ctx context.Context, id string) error {
	name, ok := QueueOf(id)
	if !ok {
		return ErrNotFound
	}
	var code int
	for range 2 { // as in Cancel
		okey, err := q.orderingKey(ctx, name, id)
		if err != nil {
			return fmt.Errorf("retry %s: %w", id, err)
		}
		keys := append(stateKeys(name), ExpiringKey(name), JobKey(name, id), ReadyKey(name))
		keys = append(keys, orderKeys(name, okey)...)
		code, err = retryScript.Run(ctx, q.rdb, keys, id, q.opts.Clock().UnixMilli(), ChannelWake, name, okey).Int()
		if err != nil {
			return fmt.Errorf("retry %s: %w", id, err)
		}
		if code != 4 {
			break
		}
	}
	switch code {
	case 0:
		return ErrNotFound
	case 3:
		return ErrConflict
	case 4:
		return fmt.Errorf("retry %s: its ordering key keeps changing", id)
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
// round trip, as one snapshot (MULTI/EXEC): a job changing state is counted
// once.
func (q *Queue) Stats(ctx context.Context, name string) (Stats, error) {
	var cmds []*redis.IntCmd
	var paused *redis.StringCmd
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
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
