package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Maintenance moves jobs whose time has come. Each step first reads due ids
// with a bounded range query (never a scan of every job), then runs a script
// that names their keys and re-checks each one, so that several processes may
// maintain the same queue at once.

// promoteScript moves due scheduled or retrying jobs to the ready set.
//
//	KEYS 1..8 state sets; 9 scheduled; 10 ready; 11.. job records
//	ARGV 1 now ms; 2 wake channel; 3 queue; 4.. ids
//	returns the number promoted
var promoteScript = newScript(`
local now = ARGV[1]
local empty = redis.call('ZCARD', KEYS[10]) == 0
local n = 0
for i = 11, #KEYS do
  local id, job = ARGV[i - 7], KEYS[i]
  local due = redis.call('ZSCORE', KEYS[9], id)
  if due and tonumber(due) <= tonumber(now) then
    redis.call('ZREM', KEYS[9], id)
    if redis.call('EXISTS', job) == 1 then
      redis.call('ZADD', KEYS[10], readyscore(job, now), id)
      setstate(job, id, 'queued', now)
      n = n + 1
    end
  end
end
if empty and n > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return n
`)

// Promote makes up to limit due jobs of queue name runnable.
func (q *Queue) Promote(ctx context.Context, name string, limit int) (int, error) {
	now := q.opts.Clock().UnixMilli()
	ids, err := q.due(ctx, ScheduledKey(name), now, limit)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	keys := append(stateKeys(name), ScheduledKey(name), ReadyKey(name))
	args := []any{now, ChannelWake, name}
	for _, id := range ids {
		keys = append(keys, JobKey(name, id))
		args = append(args, id)
	}
	n, err := promoteScript.Run(ctx, q.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("promote %s: %w", name, err)
	}
	return n, nil
}

// NextDue returns when the earliest scheduled job of queue name is due, and
// false when none is scheduled.
func (q *Queue) NextDue(ctx context.Context, name string) (time.Time, bool, error) {
	zs, err := q.rdb.ZRangeWithScores(ctx, ScheduledKey(name), 0, 0).Result()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due %s: %w", name, err)
	}
	if len(zs) == 0 {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(int64(zs[0].Score)), true, nil
}

// reapScript returns jobs whose lease expired (their worker died or stalled)
// to the ready set. An attempt that had started counts: a job that keeps
// killing its workers ends failed after max attempts. A requeued job keeps
// its ordering key's turn; one that ends (failed, canceled) passes it on.
//
//	KEYS 1..8 state sets; 9 leased; 10 tokens; 11 ready; 12 expiring;
//	     13 throughput of this minute; then per id: job record, errors list,
//	     order holder, order lane (of the job's ordering key, or of key "")
//	ARGV 1 now ms; 2 expires ms; 3 wake channel; 4 done channel; 5 queue;
//	     6 error document (lease expired); 7 time of the attempt error;
//	     8 error document (canceled); then per id: id, ordering key ('' for none)
//	returns the number of leases reaped
var reapScript = newScript(`
local now = ARGV[1]
local empty = redis.call('ZCARD', KEYS[11]) == 0
local requeued, n = 0, 0
for i = 9, #ARGV, 2 do
  local id, okey = ARGV[i], ARGV[i + 1]
  local b = 14 + (i - 9) * 2
  local job, errs, holder, lane = KEYS[b], KEYS[b + 1], KEYS[b + 2], KEYS[b + 3]
  local dl = redis.call('ZSCORE', KEYS[9], id)
  if dl and (redis.call('HGET', job, 'okey') or '') ~= okey then
    dl = nil -- the record changed since Reap read its key: left for the next reap
  end
  if dl and tonumber(dl) <= tonumber(now) then
    n = n + 1
    redis.call('ZREM', KEYS[9], id)
    redis.call('HDEL', KEYS[10], id)
    local st = redis.call('HGET', job, 'state')
    if st then
      local attempt = tonumber(redis.call('HGET', job, 'attempt') or '0')
      local max = tonumber(redis.call('HGET', job, 'max') or '1')
      if st ~= 'queued' then
        redis.call('RPUSH', errs, '{"attempt":' .. attempt .. ',"at":"' .. ARGV[7] .. '","error":"lease expired: the worker stopped heartbeating"}')
      end
      local final = nil
      if redis.call('HGET', job, 'cancel') == '1' then final = 'canceled'
      elseif st ~= 'queued' and attempt >= max then final = 'failed' end
      if final then
        setstate(job, id, final, now)
        local doc = ARGV[6]
        if final == 'canceled' then doc = ARGV[8] end
        redis.call('HSET', job, 'finished', now, 'expires', ARGV[2], 'error', doc)
        if final == 'failed' then
          redis.call('HINCRBY', KEYS[13], 'failed', 1)
          redis.call('EXPIRE', KEYS[13], 1200)
        end
        redis.call('ZADD', KEYS[12], ARGV[2], id)
        if release(id, okey, holder, lane, KEYS[11], now, ARGV[3], ARGV[5]) then
          empty = false
        end
        redis.call('PUBLISH', ARGV[4], id)
      else
        redis.call('ZADD', KEYS[11], readyscore(job, now), id)
        setstate(job, id, 'queued', now)
        requeued = requeued + 1
      end
    end
  end
end
if n > 0 then untoken(KEYS[10]) end
if empty and requeued > 0 then redis.call('PUBLISH', ARGV[3], ARGV[5]) end
return n
`)

// LeaseExpiredDoc is the error document of a job whose last lease expired.
var LeaseExpiredDoc = ErrorDoc{Type: "https://offload.dev/problems/lease-expired", Title: "Worker lost",
	Status: 500, Detail: "the worker running the last attempt stopped heartbeating"}

// Reap returns up to limit expired leases of queue name to the queue.
func (q *Queue) Reap(ctx context.Context, name string, limit int) (int, error) {
	now := q.opts.Clock()
	ids, err := q.due(ctx, LeasedKey(name), now.UnixMilli(), limit)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	// The script must name the ordering keys' holder and lane of every job:
	// read the keys first, in one round trip (one slot: one node). A job's
	// key never changes; the script still checks it.
	okeys := make([]*redis.StringCmd, len(ids))
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			okeys[i] = p.HGet(ctx, JobKey(name, id), "okey")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("reap %s: read ordering keys: %w", name, err)
	}
	for _, c := range okeys {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return 0, fmt.Errorf("reap %s: read ordering keys: %w", name, err)
		}
	}
	doc, _ := json.Marshal(LeaseExpiredDoc)
	canceled, _ := json.Marshal(CanceledDoc)
	keys := append(stateKeys(name), LeasedKey(name), TokensKey(name), ReadyKey(name), ExpiringKey(name),
		ThroughputKey(name, minute(now)))
	args := []any{now.UnixMilli(), now.Add(q.opts.Retention).UnixMilli(), ChannelWake, ChannelDone,
		name, doc, now.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano), canceled}
	for i, id := range ids {
		okey := okeys[i].Val() // "" for redis.Nil: no key, or no job
		keys = append(keys, JobKey(name, id), ErrorsKey(name, id))
		keys = append(keys, orderKeys(name, okey)...)
		args = append(args, id, okey)
	}
	n, err := reapScript.Run(ctx, q.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("reap %s: %w", name, err)
	}
	return n, nil
}

// expireScript deletes finished jobs past their retention and leaves a
// tombstone that remembers their final state.
//
//	KEYS 1..8 state sets; 9 expiring;
//	     then job record, errors list, target and tombstone per id
//	ARGV 1 now ms; 2 tombstone ttl ms; 3.. ids
//	returns the number expired
var expireScript = newScript(`
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local b = 10 + (i - 3) * 4
  local due = redis.call('ZSCORE', KEYS[9], id)
  if due and tonumber(due) <= tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[9], id)
    local st = redis.call('HGET', KEYS[b], 'state')
    if st then
      if S[st] then redis.call('ZREM', KEYS[S[st]], id) end
      redis.call('SET', KEYS[b + 3], st, 'PX', ARGV[2])
    end
    redis.call('DEL', KEYS[b], KEYS[b + 1], KEYS[b + 2])
    n = n + 1
  end
end
return n
`)

// Expire deletes up to limit finished jobs of queue name whose retention
// ended.
func (q *Queue) Expire(ctx context.Context, name string, limit int) (int, error) {
	now := q.opts.Clock().UnixMilli()
	ids, err := q.due(ctx, ExpiringKey(name), now, limit)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	keys := append(stateKeys(name), ExpiringKey(name))
	args := []any{now, q.opts.Tombstone.Milliseconds()}
	for _, id := range ids {
		keys = append(keys, JobKey(name, id), ErrorsKey(name, id), TargetKey(name, id), TombKey(name, id))
		args = append(args, id)
	}
	n, err := expireScript.Run(ctx, q.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("expire %s: %w", name, err)
	}
	return n, nil
}

// due returns up to limit members of the sorted set key scored at or before now.
func (q *Queue) due(ctx context.Context, key string, now int64, limit int) ([]string, error) {
	ids, err := q.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: key, Start: "-inf", Stop: strconv.FormatInt(now, 10), ByScore: true, Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("due %s: %w", key, err)
	}
	return ids, nil
}

// Maintainer runs promotion, reaping and expiry for every queue. Any number
// of processes may run one; their work does not collide.
type Maintainer struct {
	Q *Queue
	// Tick is how often due scheduled jobs are promoted. Default 25ms, which
	// keeps promotion within ±50ms of run_at; each tick is one O(log n) range
	// query per queue.
	Tick time.Duration
	// SweepEvery is how often leases are reaped and finished jobs expired.
	// Default 1s.
	SweepEvery time.Duration
	// OnError is told about failed steps (logging); nil ignores them.
	OnError func(step, queue string, err error)
	// OnReap is told how many expired leases of queue a sweep reaped (jobs
	// whose worker stopped heartbeating: requeued, or failed or canceled
	// on their last attempt), when it reaped any; nil ignores it.
	OnReap func(queue string, n int)
}

// Run maintains until ctx is done.
func (m *Maintainer) Run(ctx context.Context) error {
	tick, sweep := m.Tick, m.SweepEvery
	if tick <= 0 {
		tick = 25 * time.Millisecond
	}
	if sweep <= 0 {
		sweep = time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var names []string
	var lastSweep time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		sweeping := time.Since(lastSweep) >= sweep
		if sweeping || names == nil {
			ns, err := m.Q.Names(ctx)
			if err != nil {
				m.report("names", "", err)
				continue
			}
			names = ns
		}
		for _, name := range names {
			for {
				n, err := m.Q.Promote(ctx, name, 500)
				if err != nil {
					m.report("promote", name, err)
				}
				if n < 500 {
					break
				}
			}
			if _, err := m.Q.Relay(ctx, name, 100); err != nil {
				m.report("relay", name, err)
			}
			if !sweeping {
				continue
			}
			if n, err := m.Q.Reap(ctx, name, 500); err != nil {
				m.report("reap", name, err)
			} else if n > 0 && m.OnReap != nil {
				m.OnReap(name, n)
			}
			if _, err := m.Q.Expire(ctx, name, 500); err != nil {
				m.report("expire", name, err)
			}
		}
		if sweeping {
			lastSweep = time.Now()
		}
	}
}

func (m *Maintainer) report(step, name string, err error) {
	if m.OnError != nil && err != nil {
		m.OnError(step, name, err)
	}
}
