package queue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Delivery is one attempt of a job, held under a lease by a worker.
type Delivery struct {
	ID          string
	Queue       string
	Kind        string
	Version     int
	Args        []byte
	Attempt     int
	MaxAttempts int
	Timeout     time.Duration
	Checkpoint  []byte
	// RunnableSince is when the job last became runnable: its creation, its
	// run_at, or the end of its retry backoff. An ordered job's wait for its
	// key's turn is not told apart: it counts from the job's creation.
	RunnableSince time.Time
	// Token fences every write of this attempt: once the lease is lost, writes
	// carrying it are refused.
	Token string
	// OrderingKey is the job's ordering key ("" for none). Complete and Fail
	// name its keys to pass the key's turn on; a Delivery must therefore come
	// from Fetch, not be built by hand.
	OrderingKey string
}

// leaseScript takes up to n jobs off the ready set and leases them. It touches
// only queue-level keys: the job records are updated by startScript, whose
// keys the caller can name once it knows the ids.
//
//	KEYS 1 ready; 2 leased; 3 tokens; 4 seq; 5 meta
//	ARGV 1 now ms; 2 lease ms; 3 n
//	returns {id1, token1, id2, token2, ...}
var leaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[5], 'paused') == '1' then return {} end
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[3])
local out = {}
local deadline = tonumber(ARGV[1]) + tonumber(ARGV[2])
for i = 1, #popped, 2 do
  local id = popped[i]
  local tok = redis.call('INCR', KEYS[4])
  redis.call('HSET', KEYS[3], id, tok)
  redis.call('ZADD', KEYS[2], deadline, id)
  out[#out+1] = id
  out[#out+1] = tostring(tok)
end
return out
`)

// startScript marks leased jobs running and returns what their workers need.
// A job whose token no longer matches (canceled meanwhile) is skipped.
//
//	KEYS 1..8 state sets; 9 tokens; 10 leased; 11.. job records
//	ARGV 1 now ms; then id, token per job record
//	returns per job {0} skipped, or
//	        {1, attempt, kind, ver, args, max, timeout, ckpt, runnable since ms, ordering key}
var startScript = newScript(`
local now = ARGV[1]
local out = {}
for i = 11, #KEYS do
  local a = (i - 11) * 2 + 2
  local id, tok, job = ARGV[a], ARGV[a+1], KEYS[i]
  local f = redis.call('HMGET', job, 'state', 'kind', 'ver', 'args', 'max', 'timeout', 'ckpt', 'created',
    'run_at', 'okey', 'attempt')
  if redis.call('HGET', KEYS[9], id) ~= tok then
    out[#out+1] = {0}
  elseif f[1] ~= 'queued' then
    redis.call('HDEL', KEYS[9], id)
    redis.call('ZREM', KEYS[10], id)
    out[#out+1] = {0}
  else
    -- One read above, direct writes here: the state move of setstate
    -- without reading back what was just read.
    local attempt = (tonumber(f[11] or '0') or 0) + 1
    redis.call('ZREM', KEYS[S.queued], id)
    redis.call('ZADD', KEYS[S.running], f[8], id)
    redis.call('HSET', job, 'state', 'running', 'updated', now, 'started', now, 'attempt', attempt)
    local since = math.max(tonumber(f[8] or '0') or 0, tonumber(f[9] or '0') or 0)
    out[#out+1] = {1, attempt, f[2] or '', f[3] or '1', f[4] or '', f[5] or '1', f[6] or '0', f[7] or '',
      tostring(since), f[10] or ''}
  end
end
return out
`)

// Fetch leases up to n runnable jobs of queue name and marks them running.
// It returns an empty slice, not an error, when nothing is runnable or the
// queue is paused. It never blocks: callers wait for ChannelWake.
func (q *Queue) Fetch(ctx context.Context, name string, n int) ([]*Delivery, error) {
	now := q.opts.Clock().UnixMilli()
	raw, err := leaseScript.Run(ctx, q.rdb,
		[]string{ReadyKey(name), LeasedKey(name), TokensKey(name), SeqKey(name), MetaKey(name)},
		now, q.opts.Lease.Milliseconds(), n).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("lease from %s: %w", name, err)
	}
	if len(raw) == 0 {
		return nil, nil
	}
	// The jobs are leased now: whatever happens to ctx, mark them started, or
	// they wait for the reaper.
	ctx = context.WithoutCancel(ctx)
	keys := stateKeys(name)
	args := make([]any, 0, 1+len(raw))
	args = append(args, now)
	keys = append(keys, TokensKey(name), LeasedKey(name))
	for i := 0; i < len(raw); i += 2 {
		keys = append(keys, JobKey(name, raw[i]))
		args = append(args, raw[i], raw[i+1])
	}
	res, err := startScript.Run(ctx, q.rdb, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("start jobs of %s: %w", name, err)
	}
	out := make([]*Delivery, 0, len(res))
	for i, r := range res {
		f, _ := r.([]any)
		if len(f) < 10 || toInt(f[0]) != 1 {
			continue
		}
		out = append(out, &Delivery{
			ID:            raw[2*i],
			Token:         raw[2*i+1],
			Queue:         name,
			Attempt:       toInt(f[1]),
			Kind:          toString(f[2]),
			Version:       toInt(f[3]),
			Args:          []byte(toString(f[4])),
			MaxAttempts:   toInt(f[5]),
			Timeout:       time.Duration(toInt(f[6])) * time.Millisecond,
			Checkpoint:    nonEmpty(toString(f[7])),
			RunnableSince: time.UnixMilli(int64(toInt(f[8]))),
			OrderingKey:   toString(f[9]),
		})
	}
	return out, nil
}

// Lease states reported by Heartbeat.
const (
	LeaseHeld     = 0 // renewed
	LeaseLost     = 1 // taken over or the job is gone: stop working on it
	LeaseCanceled = 2 // renewed, but a cancel was requested
)

// heartbeatScript renews the leases of jobs still held with their tokens.
//
//	KEYS 1 leased; 2 tokens; 3.. job records
//	ARGV 1 new deadline ms; then id, token per job record
//	returns one LeaseHeld/LeaseLost/LeaseCanceled code per job
var heartbeatScript = redis.NewScript(`
local out = {}
for i = 3, #KEYS do
  local a = (i - 3) * 2 + 2
  local id, tok = ARGV[a], ARGV[a+1]
  if redis.call('HGET', KEYS[2], id) ~= tok then
    out[#out+1] = 1
  else
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], id)
    if redis.call('HGET', KEYS[i], 'cancel') == '1' then out[#out+1] = 2 else out[#out+1] = 0 end
  end
end
return out
`)

// Heartbeat renews the leases of ds, which must all be of queue name, and
// returns one Lease* code per delivery.
func (q *Queue) Heartbeat(ctx context.Context, name string, ds []*Delivery) ([]int, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, 2+len(ds))
	keys = append(keys, LeasedKey(name), TokensKey(name))
	args := make([]any, 0, 1+2*len(ds))
	args = append(args, q.opts.Clock().Add(q.opts.Lease).UnixMilli())
	for _, d := range ds {
		keys = append(keys, JobKey(name, d.ID))
		args = append(args, d.ID, d.Token)
	}
	codes, err := heartbeatScript.Run(ctx, q.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("heartbeat %s: %w", name, err)
	}
	out := make([]int, len(codes))
	for i, c := range codes {
		out[i] = int(c)
	}
	return out, nil
}

func toInt(v any) int {
	switch x := v.(type) {
	case int64:
		return int(x)
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return 0
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

func nonEmpty(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}
