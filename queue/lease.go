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

// luaMany is Lua that script bodies include (after the prelude, if any) to
// run a multi-member command (HSET, HMGET, ZADD, ZREM, HDEL) over a whole
// batch in as few calls as Lua allows: unpack() is bounded by the C stack
// (LUAI_MAXCSTACK, 8000), so long argument lists go in chunks of manyChunk,
// an even number so that field/value and score/member pairs stay whole.
//
//	many(cmd, key, args)  returns the replies of table-valued commands
//	                      (HMGET), concatenated; nothing for an empty args
const luaMany = `
local function many(cmd, key, args)
  local n, res = #args, nil
  for i = 1, n, 4000 do
    local r = redis.call(cmd, key, unpack(args, i, math.min(i + 3999, n)))
    if res == nil or type(r) ~= 'table' then
      res = r
    else
      for _, v in ipairs(r) do res[#res+1] = v end
    end
  end
  return res
end
`

// leaseScript takes up to n jobs off the ready set and leases them. It touches
// only queue-level keys: the job records are updated by startScript, whose
// keys the caller can name once it knows the ids. The batch takes one block
// of fencing tokens (one INCRBY) and is recorded with one HSET and one ZADD
// (and an HSETNX of the tokens hash's marker: TokensKey).
// It takes the jobs with ZRANGE and ZREMRANGEBYRANK, not ZPOPMIN: the same
// jobs in the same order, without the scores that ZPOPMIN would format as
// text for Lua to throw away (3% of the Redis time per job at batches of
// 37, docs/benchmarks.md).
//
//	KEYS 1 ready; 2 leased; 3 tokens; 4 seq; 5 meta
//	ARGV 1 now ms; 2 lease ms; 3 n
//	returns {id1, token1, id2, token2, ...}
var leaseScript = redis.NewScript(luaMany + `
if redis.call('HGET', KEYS[5], 'paused') == '1' then return {} end
local ids = redis.call('ZRANGE', KEYS[1], 0, ARGV[3] - 1)
local n = #ids
if n == 0 then return {} end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
local first = redis.call('INCRBY', KEYS[4], n) - n
local deadline = string.format('%d', tonumber(ARGV[1]) + tonumber(ARGV[2]))
local out, leased = {}, {}
for i = 1, n do
  local id = ids[i]
  out[2*i-1], out[2*i] = id, tostring(first + i)
  leased[2*i-1], leased[2*i] = deadline, id
end
redis.call('HSETNX', KEYS[3], '` + TokensMarker + `', '` + tokensPad + `')
many('HSET', KEYS[3], out)
many('ZADD', KEYS[2], leased)
return out
`)

// startScript marks leased jobs running and returns what their workers need.
// A job whose token no longer matches (canceled meanwhile) is skipped. The
// tokens are read with one HMGET and the state sets moved with one ZREM and
// one ZADD for the batch; each job costs one HMGET and one HSET of its record.
//
//	KEYS 1..8 state sets; 9 tokens; 10 leased; 11.. job records
//	ARGV 1 now ms; then id, token per job record
//	returns a flat array: per job 0 (skipped), or 1 followed by attempt, kind,
//	        ver, args, max, timeout, ckpt, runnable since ms, ordering key
var startScript = newScript(luaMany + `
local now, n = ARGV[1], #KEYS - 10
local ids = {}
for j = 1, n do ids[j] = ARGV[2*j] end
local toks = many('HMGET', KEYS[9], ids)
local out, started, running, gone = {}, {}, {}, {}
for j = 1, n do
  local id, job = ids[j], KEYS[10+j]
  if toks[j] ~= ARGV[2*j+1] then
    out[#out+1] = 0
  else
    local f = redis.call('HMGET', job, 'state', 'kind', 'ver', 'args', 'max', 'timeout', 'ckpt', 'created',
      'run_at', 'okey', 'attempt')
    if f[1] ~= 'queued' then
      gone[#gone+1] = id
      out[#out+1] = 0
    else
      -- The state move of setstate, without reading back what was just read.
      local attempt = (tonumber(f[11] or '0') or 0) + 1
      started[#started+1] = id
      running[#running+1] = f[8] or '0'
      running[#running+1] = id
      redis.call('HSET', job, 'state', 'running', 'updated', now, 'started', now, 'attempt', attempt)
      local since = math.max(tonumber(f[8] or '0') or 0, tonumber(f[9] or '0') or 0)
      local o = #out
      out[o+1], out[o+2], out[o+3], out[o+4], out[o+5] = 1, attempt, f[2] or '', f[3] or '1', f[4] or ''
      out[o+6], out[o+7], out[o+8], out[o+9], out[o+10] = f[5] or '1', f[6] or '0', f[7] or '', since, f[10] or ''
    end
  end
end
if #started > 0 then
  many('ZREM', KEYS[S.queued], started)
  many('ZADD', KEYS[S.running], running)
end
if #gone > 0 then
  many('HDEL', KEYS[9], gone)
  many('ZREM', KEYS[10], gone)
  untoken(KEYS[9])
end
return out
`)

// Fetch leases up to n runnable jobs of queue name and marks them running.
// It returns an empty slice, not an error, when nothing is runnable or the
// queue is paused. It never blocks: callers wait for ChannelWake.
func (q *Queue) Fetch(ctx context.Context, name string, n int) ([]*Delivery, error) {
	ds, _, err := q.FetchUntilEmpty(ctx, name, n)
	return ds, err
}

// FetchUntilEmpty is Fetch that also reports whether it emptied the queue:
// fewer than n jobs were runnable (or the queue is paused), so that no job
// is runnable until the next ChannelWake message naming the queue (its
// ready set turning non-empty, or a resume). A caller may skip the queue
// until then. The deliveries can be fewer than n even when emptied is false:
// a job canceled between its lease and its start is left out.
func (q *Queue) FetchUntilEmpty(ctx context.Context, name string, n int) (ds []*Delivery, emptied bool, err error) {
	now := q.opts.Clock().UnixMilli()
	raw, err := leaseScript.Run(ctx, q.rdb,
		[]string{ReadyKey(name), LeasedKey(name), TokensKey(name), SeqKey(name), MetaKey(name)},
		now, q.opts.Lease.Milliseconds(), n).StringSlice()
	if err != nil {
		return nil, false, fmt.Errorf("lease from %s: %w", name, err)
	}
	emptied = len(raw)/2 < n
	if len(raw) == 0 {
		return nil, emptied, nil
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
		return nil, false, fmt.Errorf("start jobs of %s: %w", name, err)
	}
	out := make([]*Delivery, 0, len(raw)/2)
	for i, j := 0, 0; j < len(res) && i < len(raw); i += 2 {
		if toInt(res[j]) != 1 || j+10 > len(res) {
			j++
			continue
		}
		f := res[j+1 : j+10]
		j += 10
		out = append(out, &Delivery{
			ID:            raw[i],
			Token:         raw[i+1],
			Queue:         name,
			Attempt:       toInt(f[0]),
			Kind:          toString(f[1]),
			Version:       toInt(f[2]),
			Args:          []byte(toString(f[3])),
			MaxAttempts:   toInt(f[4]),
			Timeout:       time.Duration(toInt(f[5])) * time.Millisecond,
			Checkpoint:    nonEmpty(toString(f[6])),
			RunnableSince: time.UnixMilli(int64(toInt(f[7]))),
			OrderingKey:   toString(f[8]),
		})
	}
	return out, emptied, nil
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
