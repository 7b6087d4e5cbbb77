package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Outcome is what an attempt produced.
type Outcome struct {
	// Result is the JSON stored as the status document's result ("" for none).
	Result []byte
	// TargetURL is the path of the resource the job created ("" for none).
	TargetURL string
	// TargetType and TargetBody are the created resource's representation.
	TargetType string
	TargetBody []byte
	// FollowUps are jobs the handler enqueues. They are staged atomically
	// with the success (never for an attempt that did not complete) and
	// enqueued by the relay (Maintainer) into their own queues. Their IDs
	// must be set (NewID of their queue).
	FollowUps []NewJob
}

// completeScript records successful attempts of one queue, fenced by their
// tokens. One call records a batch, so that a busy worker acknowledges many
// jobs in one round trip, and writes the queue-level keys once for the whole
// batch: one HMGET of the tokens, one HDEL and ZREM to end the leases, one
// ZREM per state the jobs leave, one ZADD into succeeded and one into
// expiring, and one message on the done channel carrying every id recorded
// (space-separated; one message per 1000 ids). Each job costs one HMGET and
// one HSET of its record, plus its target, follow-ups and ordering key's
// turn when it has them. A job passes only the keys and arguments it uses:
// every value a script receives costs Redis time (docs/benchmarks.md, "What
// a script call costs"), and most jobs have no target, follow-up or key.
//
//	KEYS 1..8 state sets; 9 tokens; 10 leased; 11 expiring; 12 throughput of
//	     this minute; 13 ready; 14 outbox; then per job: its record, then its
//	     target if it has a target url, then its ordering key's holder and
//	     lane if it has a key
//	ARGV 1 now ms; 2 expires ms; 3 done channel; 4 wake channel; 5 queue; then
//	     per job: id, token, ordering key ('' for none), and '' for a job with
//	     no output, or '+' followed by result, target url, target type, target
//	     body, follow-ups (JSON array or ''), follow-up ids (comma-separated)
//	returns one code per job: 1 done, 0 lease lost, -1 ordering key mismatch
var completeScript = newScript(luaMany + `
local now, exp = ARGV[1], ARGV[2]
-- First pass: each job's first argument and first key.
local ids, ao, ko, a, k, n = {}, {}, {}, 6, 15, 0
while a <= #ARGV do
  n = n + 1
  ids[n], ao[n], ko[n] = ARGV[a], a, k
  k = k + 1 -- the record
  if ARGV[a+2] ~= '' then k = k + 2 end -- the key's holder and lane
  if ARGV[a+3] == '+' then
    if ARGV[a+5] ~= '' then k = k + 1 end -- the target
    a = a + 10
  else
    a = a + 4
  end
end
local toks = many('HMGET', KEYS[9], ids)
local out, done, seen, from, succeeded, expiring = {}, {}, {}, {}, {}, {}
for i = 1, n do
  local id, a, k = ids[i], ao[i], ko[i]
  local job, okey = KEYS[k], ARGV[a+2]
  if toks[i] ~= ARGV[a+1] or seen[id] then
    out[i] = 0 -- a repeated id: its first completion ended the lease
  else
    local f = redis.call('HMGET', job, 'state', 'created', 'okey')
    if (f[3] or '') ~= okey then
      out[i] = -1
    else
      seen[id] = true
      done[#done+1] = id
      local s = f[1] and S[f[1]]
      if s then
        from[s] = from[s] or {}
        from[s][#from[s]+1] = id
      end
      succeeded[#succeeded+1] = f[2] or '0'
      succeeded[#succeeded+1] = id
      expiring[#expiring+1] = exp
      expiring[#expiring+1] = id
      k = k + 1
      if ARGV[a+3] ~= '+' then
        redis.call('HSET', job, 'state', 'succeeded', 'updated', now, 'finished', now, 'expires', exp, 'pct', '100')
      else
        local h = {'state', 'succeeded', 'updated', now, 'finished', now, 'expires', exp, 'pct', '100'}
        if ARGV[a+4] ~= '' then h[#h+1] = 'result'; h[#h+1] = ARGV[a+4] end
        if ARGV[a+5] ~= '' then
          h[#h+1] = 'target'; h[#h+1] = ARGV[a+5]
          redis.call('HSET', KEYS[k], 'type', ARGV[a+6], 'body', ARGV[a+7])
          k = k + 1
        end
        if ARGV[a+8] ~= '' then
          redis.call('RPUSH', KEYS[14], ARGV[a+8])
          h[#h+1] = 'children'; h[#h+1] = ARGV[a+9]
        end
        redis.call('HSET', job, unpack(h))
      end
      if okey ~= '' then
        release(id, okey, KEYS[k], KEYS[k+1], KEYS[13], now, ARGV[4], ARGV[5])
      end
      out[i] = 1
    end
  end
end
if #done > 0 then
  many('HDEL', KEYS[9], done)
  untoken(KEYS[9])
  many('ZREM', KEYS[10], done)
  -- setstate for the batch, without reading back what HMGET just read: leave
  -- every state first, then enter succeeded.
  for s, list in pairs(from) do many('ZREM', KEYS[s], list) end
  many('ZADD', KEYS[S.succeeded], succeeded)
  many('ZADD', KEYS[11], expiring)
  for i = 1, #done, 1000 do
    redis.call('PUBLISH', ARGV[3], table.concat(done, ' ', i, math.min(i + 999, #done)))
  end
  redis.call('HINCRBY', KEYS[12], 'succeeded', #done)
  redis.call('EXPIRE', KEYS[12], 1200)
end
return out
`)

// errOrderingKeyMismatch: a delivery's ordering key is not its job's.
var errOrderingKeyMismatch = errors.New("ordering key mismatch: the delivery does not come from Fetch")

// Completion is a delivery and what its attempt produced.
type Completion struct {
	D *Delivery
	O Outcome
}

// Complete records d's success. It returns ErrLeaseLost when d's lease was
// taken over: the outcome is then discarded.
func (q *Queue) Complete(ctx context.Context, d *Delivery, o Outcome) error {
	errs, err := q.CompleteMany(ctx, d.Queue, []Completion{{D: d, O: o}})
	if err != nil {
		return err
	}
	return errs[0]
}

// CompleteMany records the successes of cs, which must all be deliveries of
// queue name, in one round trip. It returns one error per completion (nil,
// ErrLeaseLost, or a mismatch), or an error for the whole call.
func (q *Queue) CompleteMany(ctx context.Context, name string, cs []Completion) ([]error, error) {
	now := q.opts.Clock()
	keys := make([]string, 0, 14+len(cs))
	keys = append(keys, stateKeys(name)...)
	keys = append(keys, TokensKey(name), LeasedKey(name), ExpiringKey(name),
		ThroughputKey(name, minute(now)), ReadyKey(name), OutboxKey(name))
	args := make([]any, 0, 5+4*len(cs))
	args = append(args, now.UnixMilli(), now.Add(q.opts.Retention).UnixMilli(), ChannelDone, ChannelWake, name)
	for _, c := range cs {
		d := c.D
		if d.Queue != name {
			return nil, fmt.Errorf("complete %s: delivery of queue %s in a batch of %s", d.ID, d.Queue, name)
		}
		keys = append(keys, JobKey(name, d.ID))
		args = append(args, d.ID, d.Token, d.OrderingKey)
		o := c.O
		if len(o.Result) == 0 && o.TargetURL == "" && len(o.FollowUps) == 0 {
			args = append(args, "")
		} else {
			fu, ids, err := followUps(o.FollowUps)
			if err != nil {
				return nil, fmt.Errorf("complete %s: %w", d.ID, err)
			}
			args = append(args, "+", o.Result, o.TargetURL, o.TargetType, o.TargetBody, fu, ids)
			if o.TargetURL != "" {
				keys = append(keys, TargetKey(name, d.ID))
			}
		}
		if d.OrderingKey != "" {
			keys = append(keys, orderKeys(name, d.OrderingKey)...)
		}
	}
	codes, err := completeScript.Run(ctx, q.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("complete %d jobs of %s: %w", len(cs), name, err)
	}
	errs := make([]error, len(cs))
	for i, c := range codes {
		switch c {
		case 0:
			errs[i] = ErrLeaseLost
		case -1:
			errs[i] = fmt.Errorf("complete %s: %w", cs[i].D.ID, errOrderingKeyMismatch)
		}
	}
	return errs, nil
}

// followUps encodes staged follow-up jobs for completeScript.
func followUps(js []NewJob) (encoded, ids string, err error) {
	if len(js) == 0 {
		return "", "", nil
	}
	list := make([]string, len(js))
	for i, j := range js {
		if name, ok := QueueOf(j.ID); !ok || name != j.Queue {
			return "", "", fmt.Errorf("follow-up %q: id must be NewID(%q)", j.ID, j.Queue)
		}
		list[i] = j.ID
	}
	b, err := json.Marshal(js)
	if err != nil {
		return "", "", err
	}
	return string(b), strings.Join(list, ","), nil
}

// Relay enqueues up to limit staged batches of follow-up jobs of queue name.
// Each follow-up carries its id, so a batch relayed twice (two processes, or
// a crash before its removal) still makes each job once.
func (q *Queue) Relay(ctx context.Context, name string, limit int) (int, error) {
	entries, err := q.rdb.LRange(ctx, OutboxKey(name), 0, int64(limit)-1).Result()
	if err != nil {
		return 0, fmt.Errorf("relay %s: %w", name, err)
	}
	n := 0
	for _, e := range entries {
		var js []NewJob
		if err := json.Unmarshal([]byte(e), &js); err != nil {
			return n, fmt.Errorf("relay %s: %w", name, err)
		}
		for _, j := range js {
			if _, err := q.Enqueue(ctx, j); err != nil && !errors.Is(err, ErrExists) {
				return n, fmt.Errorf("relay %s: %w", j.ID, err)
			}
			n++
		}
		if err := q.rdb.LRem(ctx, OutboxKey(name), 1, e).Err(); err != nil {
			return n, fmt.Errorf("relay %s: %w", name, err)
		}
	}
	return n, nil
}

// Failure modes for Fail.
const (
	// FailRetry: retry after the backoff if attempts remain, else fail.
	FailRetry = "retry"
	// FailPermanent: fail now, whatever attempts remain.
	FailPermanent = "permanent"
	// FailCanceled: the handler stopped because its job was canceled.
	FailCanceled = "canceled"
	// FailRequeue: the attempt was interrupted (shutdown, run slice); put the
	// job back without consuming an attempt, behind the jobs ready now.
	FailRequeue = "requeue"
	// FailReturn: the job never started (it waited for a slot in a worker
	// that had leased it ahead); put it back without consuming an attempt,
	// in the place it had (Delivery.RunnableSince).
	FailReturn = "return"
)

// failScript records an unsuccessful or interrupted attempt. A job that ends
// (failed, canceled) passes its ordering key's turn on; a job that will run
// again (retrying, requeued) keeps it.
//
//	KEYS 1..8 state sets; 9 tokens; 10 leased; 11 expiring; 12 job; 13 errors;
//	     14 scheduled; 15 ready; 16 throughput of this minute; 17 order holder;
//	     18 order lane
//	ARGV 1 id; 2 token; 3 now ms; 4 expires ms; 5 mode; 6 retry at ms (for
//	     mode 'return': the time the job became runnable, its place);
//	     7 attempt error entry (JSON); 8 error document (JSON); 9 done channel;
//	     10 wake channel; 11 queue; 12 ordering key ('' for none)
//	returns the state reached, or '' when the lease was lost; an error when
//	ARGV 12 is not the job's key
var failScript = newScript(`
local id, job, now = ARGV[1], KEYS[12], ARGV[3]
if redis.call('HGET', KEYS[9], id) ~= ARGV[2] then return '' end
if (redis.call('HGET', job, 'okey') or '') ~= ARGV[12] then
  return redis.error_reply('ordering key mismatch: the delivery does not come from Fetch')
end
redis.call('HDEL', KEYS[9], id)
untoken(KEYS[9])
redis.call('ZREM', KEYS[10], id)
local mode = ARGV[5]
local function finish(to)
  setstate(job, id, to, now)
  redis.call('HSET', job, 'finished', now, 'expires', ARGV[4])
  redis.call('ZADD', KEYS[11], ARGV[4], id)
  release(id, ARGV[12], KEYS[17], KEYS[18], KEYS[15], now, ARGV[10], ARGV[11])
  redis.call('PUBLISH', ARGV[9], id)
  return to
end
if mode == 'canceled' or redis.call('HGET', job, 'cancel') == '1' then
  redis.call('HSET', job, 'error', ARGV[8])
  return finish('canceled')
end
if mode == 'requeue' or mode == 'return' then
  redis.call('HINCRBY', job, 'attempt', -1)
  local empty = redis.call('ZCARD', KEYS[15]) == 0
  local at = now
  if mode == 'return' then at = ARGV[6] end
  redis.call('ZADD', KEYS[15], readyscore(job, at), id)
  setstate(job, id, 'queued', now)
  if empty then redis.call('PUBLISH', ARGV[10], ARGV[11]) end
  return 'queued'
end
redis.call('RPUSH', KEYS[13], ARGV[7])
redis.call('HSET', job, 'error', ARGV[8])
local attempt = tonumber(redis.call('HGET', job, 'attempt') or '0')
local max = tonumber(redis.call('HGET', job, 'max') or '1')
if mode == 'retry' and attempt < max then
  redis.call('ZADD', KEYS[14], ARGV[6], id)
  redis.call('HSET', job, 'run_at', ARGV[6])
  setstate(job, id, 'retrying', now)
  return 'retrying'
end
redis.call('HINCRBY', KEYS[16], 'failed', 1)
redis.call('EXPIRE', KEYS[16], 1200)
return finish('failed')
`)

// AttemptError is one entry of a job's attempt history.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// ErrorDoc is the error stored on the job for clients (a problem document).
type ErrorDoc struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Fail records an attempt of d that did not succeed, in the given mode
// (FailRetry, FailPermanent, FailCanceled, FailRequeue or FailReturn).
// retryAt is when a retry may run; FailReturn ignores it and puts the job
// back at the time it became runnable (d.RunnableSince), its place. It
// returns the state the job reached, or ErrLeaseLost. A job that is
// retrying, requeued or returned keeps its ordering key's turn.
func (q *Queue) Fail(ctx context.Context, d *Delivery, mode string, retryAt time.Time, cause string, doc ErrorDoc) (string, error) {
	now := q.opts.Clock()
	if mode == FailReturn {
		retryAt = d.RunnableSince
	}
	// Milliseconds, as every other time of a job.
	entry, _ := json.Marshal(AttemptError{Attempt: d.Attempt, At: now.UTC().Truncate(time.Millisecond), Error: cause})
	docJSON, _ := json.Marshal(doc)
	keys := append(stateKeys(d.Queue), TokensKey(d.Queue), LeasedKey(d.Queue),
		ExpiringKey(d.Queue), JobKey(d.Queue, d.ID), ErrorsKey(d.Queue, d.ID),
		ScheduledKey(d.Queue), ReadyKey(d.Queue), ThroughputKey(d.Queue, minute(now)))
	keys = append(keys, orderKeys(d.Queue, d.OrderingKey)...)
	state, err := failScript.Run(ctx, q.rdb, keys, d.ID, d.Token, now.UnixMilli(),
		now.Add(q.opts.Retention).UnixMilli(), mode, retryAt.UnixMilli(), entry, docJSON,
		ChannelDone, ChannelWake, d.Queue, d.OrderingKey).Text()
	if err != nil {
		return "", fmt.Errorf("fail %s: %w", d.ID, err)
	}
	if state == "" {
		return "", ErrLeaseLost
	}
	return state, nil
}

// progressScript stores a running job's progress and checkpoint, fenced.
//
//	KEYS 1 tokens; 2 job
//	ARGV 1 id; 2 token; 3 now ms; 4 percent; 5 message; 6 checkpoint ('' keeps it)
//	returns 1 stored, 0 lease lost
var progressScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'pct', ARGV[4], 'msg', ARGV[5], 'updated', ARGV[3])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'ckpt', ARGV[6]) end
return 1
`)

// Progress stores d's progress and, when checkpoint is not nil, its
// checkpoint. It returns ErrLeaseLost when d's lease was taken over.
func (q *Queue) Progress(ctx context.Context, d *Delivery, percent float64, message string, checkpoint []byte) error {
	n, err := progressScript.Run(ctx, q.rdb,
		[]string{TokensKey(d.Queue), JobKey(d.Queue, d.ID)},
		d.ID, d.Token, q.opts.Clock().UnixMilli(), percent, message, checkpoint).Int()
	if err != nil {
		return fmt.Errorf("progress %s: %w", d.ID, err)
	}
	if n == 0 {
		return ErrLeaseLost
	}
	return nil
}

// minute returns the unix second at which t's minute starts.
func minute(t time.Time) int64 { return t.Unix() / 60 * 60 }
