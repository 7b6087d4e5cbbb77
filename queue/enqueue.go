package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// enqueueScript creates the records of a batch of new jobs of one queue and
// puts each in the ready or scheduled set, or, when another job holds its
// ordering key's turn, at the back of the key's lane (state queued, in no
// other set). The index writes of the batch are one command per set.
//
// It calls no setstate, so it names only the two state sets it writes and
// includes only the ordering gate of the prelude; it builds a table only
// for what the batch holds (the script is on the path of every enqueue, and
// each closure and table is paid per call). A batch of several jobs checks
// that none exists with one EXISTS over all its keys, and checks job by job
// only when some key exists (a duplicate id, or an ordering key's holder).
//
//	KEYS 1 st:queued; 2 st:scheduled; 3 ready; 4 scheduled; then per job: its
//	     record and, for a job with an ordering key, the key's holder and lane
//	ARGV 1 now ms; 2 wake channel; 3 queue; then per job: id, run_at ms (0:
//	     now), ready score, ordering key ('' for none; never with a run_at),
//	     n, and n field/value arguments of the record
//	returns one code per job: 0 exists, 1 queued (ready or in the lane),
//	     2 scheduled
var enqueueScript = redis.NewScript(luaGate + `
local now = ARGV[1]
local nnow, out = tonumber(now), {}
local queued, ready, sched, schedst
local fresh = #KEYS > 5 and redis.call('EXISTS', unpack(KEYS, 5)) == 0
local a, k = 4, 5
while a <= #ARGV do
  local id, runat, okey, n = ARGV[a], tonumber(ARGV[a+1]), ARGV[a+3], tonumber(ARGV[a+4])
  local job = KEYS[k]
  if not fresh and redis.call('EXISTS', job) == 1 then
    out[#out+1] = 0
  elseif runat > nnow then
    redis.call('HSET', job, 'created', now, 'state', 'scheduled', 'run_at', runat,
      unpack(ARGV, a+5, a+4+n))
    if not sched then sched, schedst = {}, {} end
    sched[#sched+1], sched[#sched+2] = runat, id
    schedst[#schedst+1], schedst[#schedst+2] = now, id
    out[#out+1] = 2
  else
    redis.call('HSET', job, 'created', now, 'state', 'queued', unpack(ARGV, a+5, a+4+n))
    if not queued then queued, ready = {}, {} end
    queued[#queued+1], queued[#queued+2] = now, id
    if gate(job, id, okey, KEYS[k+1], KEYS[k+2]) then
      ready[#ready+1], ready[#ready+2] = ARGV[a+2], id
    end
    out[#out+1] = 1
  end
  k = k + 1
  if okey ~= '' then k = k + 2 end
  a = a + 5 + n
end
if queued then
  redis.call('ZADD', KEYS[1], unpack(queued))
  if #ready > 0 then
    local empty = redis.call('ZCARD', KEYS[3]) == 0
    redis.call('ZADD', KEYS[3], unpack(ready))
    if empty then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
  end
end
if sched then
  redis.call('ZADD', KEYS[4], unpack(sched))
  redis.call('ZADD', KEYS[2], unpack(schedst))
end
return out
`)

// enqueueOneScript is enqueueScript for the most common batch: one job, to
// run now, without an ordering key (every enqueue of a lone caller). It
// does the same writes with no loop, table or function of its own, and the
// record's fixed field names are in its text instead of its arguments: a
// script's arguments, and every table and closure it builds, are paid on
// each call. One EXISTS tells both whether the job exists and whether the
// ready set is empty (Redis deletes an emptied set): it names the record
// twice, so that it counts 2 for it and 1 for the ready set.
//
//	KEYS 1 the job's record; 2 st:queued; 3 ready
//	ARGV 1 now ms; 2 ready score; 3 id; 4 queue; 5 kind; 6 args; then the
//	     other field/value arguments of the record
//	returns 0 exists, 1 queued
var enqueueOneScript = redis.NewScript(`
local seen = redis.call('EXISTS', KEYS[1], KEYS[1], KEYS[3])
if seen >= 2 then return 0 end
redis.call('HSET', KEYS[1], 'created', ARGV[1], 'state', 'queued', 'kind', ARGV[5], 'args', ARGV[6], unpack(ARGV, 7))
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
if seen == 0 then redis.call('PUBLISH', '` + ChannelWake + `', ARGV[4]) end
return 1
`)

// Enqueue stores a new job and makes it runnable (or scheduled, or waiting
// for its ordering key's turn).
//
// Concurrent calls share round trips: while one batch of enqueues is on its
// way to Redis, the calls that arrive wait for it and then go together, one
// script call per queue (group commit). A lone call goes at once. Once a
// call's job is handed to a batch, the call waits for the batch's answer
// whatever happens to ctx, so that an error never hides a job that was
// stored.
func (q *Queue) Enqueue(ctx context.Context, j NewJob) (Enqueued, error) {
	r, err := q.prepare(j)
	if err != nil {
		return Enqueued{}, err
	}
	if err := q.remember(ctx, r.job.Queue); err != nil {
		return Enqueued{}, err
	}
	if err := ctx.Err(); err != nil {
		return Enqueued{}, err
	}
	q.enq.do(r)
	return r.res, r.err
}

// EnqueueMany stores jobs, of one queue or several, in as few round trips
// as it can: chunks of up to 256 jobs, each one script call per queue (as
// concurrent Enqueue calls share them), so that one goroutine can store a
// large set of jobs at the speed of many. It answers every job, in the order
// of jobs: res[i] and errs[i] are what Enqueue(ctx, jobs[i]) would have
// returned. A job refused (a bad queue name or ordering key, an id that
// exists) does not hold up the others. An id named twice is stored once:
// the later jobs with it get ErrExists (or, when the first was not stored,
// the first's error). Jobs with one ordering key keep their order in jobs.
// A job's creation time is when its chunk was sent. Once a chunk is sent,
// its answers are awaited whatever happens to ctx; the jobs of the chunks
// not sent when ctx is done get its error, and nothing of them is stored.
func (q *Queue) EnqueueMany(ctx context.Context, jobs []NewJob) (res []Enqueued, errs []error) {
	res, errs = make([]Enqueued, len(jobs)), make([]error, len(jobs))
	reqs := make([]*enqueueReq, len(jobs))
	valid := make([]*enqueueReq, 0, len(jobs))
	for i, j := range jobs {
		r, err := q.prepare(j)
		if err == nil {
			err = q.remember(ctx, r.job.Queue)
		}
		if err != nil {
			errs[i] = err
			continue
		}
		reqs[i] = r
		valid = append(valid, r)
	}
	firsts, dups := firstOfEachID(valid)
	for len(firsts) > 0 {
		chunk := firsts[:min(len(firsts), q.enq.maxBatch)]
		firsts = firsts[len(chunk):]
		if err := ctx.Err(); err != nil {
			for _, r := range chunk {
				r.err = err
				close(r.done)
			}
			continue
		}
		now := q.opts.Clock().UnixMilli()
		for _, r := range chunk {
			r.nowMS = now
		}
		q.storeBatch(chunk)
	}
	answerDuplicates(dups)
	for i, r := range reqs {
		if r != nil {
			res[i], errs[i] = r.res, r.err
		}
	}
	return res, errs
}

// enqueueReq is one job on its way to Redis, and its answer.
type enqueueReq struct {
	job          NewJob
	nowMS, runAt int64
	res          Enqueued
	err          error
	done         chan struct{}
}

// prepare checks j, fills its defaults and stamps it.
func (q *Queue) prepare(j NewJob) (*enqueueReq, error) {
	if !ValidQueueName(j.Queue) {
		return nil, ErrBadQueueName
	}
	if j.ID == "" {
		j.ID = q.NewID(j.Queue)
	} else if name, ok := QueueOf(j.ID); !ok || name != j.Queue {
		return nil, fmt.Errorf("enqueue %s: the id is not %q", j.ID, j.Queue+".{ulid}")
	}
	if j.OrderingKey != "" {
		if !ValidOrderingKey(j.OrderingKey) {
			return nil, fmt.Errorf("enqueue %s: %w: want 1 to %d characters of UTF-8",
				j.ID, ErrBadOrderingKey, MaxOrderingKey)
		}
		if !j.RunAt.IsZero() {
			return nil, fmt.Errorf("enqueue %s: %w: an ordered job cannot have a run_at",
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
	r := &enqueueReq{job: j, nowMS: now.UnixMilli(), done: make(chan struct{})}
	if !j.RunAt.IsZero() && j.RunAt.After(now) {
		r.runAt = j.RunAt.UnixMilli()
	}
	return r, nil
}

// batcher groups concurrent enqueues. At most maxFlight batches are on
// their way at once; the calls that arrive meanwhile wait in pending and
// leave with the next batch. The caller that finds a free flight runs
// batches itself (no hand-off to another goroutine when there is no
// contention) until its own job is answered, then hands what is pending to
// a new goroutine.
type batcher struct {
	run       func([]*enqueueReq)
	mu        sync.Mutex
	pending   []*enqueueReq
	active    int
	maxFlight int
	maxBatch  int
}

func (b *batcher) do(r *enqueueReq) {
	b.mu.Lock()
	b.pending = append(b.pending, r)
	if b.active >= b.maxFlight {
		b.mu.Unlock()
		<-r.done
		return
	}
	b.active++
	b.mu.Unlock()
	b.drain(r)
	<-r.done
}

// drain runs batches until own has its answer (or, for own == nil, until
// nothing is pending), then hands on or gives back its flight.
func (b *batcher) drain(own *enqueueReq) {
	for {
		b.mu.Lock()
		n := min(len(b.pending), b.maxBatch)
		if n == 0 {
			b.active--
			b.mu.Unlock()
			return
		}
		batch := make([]*enqueueReq, n)
		copy(batch, b.pending)
		b.pending = append(b.pending[:0], b.pending[n:]...)
		b.mu.Unlock()
		b.run(batch)
		if own == nil {
			continue
		}
		select {
		case <-own.done:
			b.mu.Lock()
			if len(b.pending) == 0 {
				b.active--
				b.mu.Unlock()
				return
			}
			b.mu.Unlock()
			go b.drain(nil) // keeps this flight
			return
		default:
		}
	}
}

// enqueueBatch stores a batch: one script call per queue, pipelined when
// the batch spans queues (a lone job to run now without an ordering key:
// enqueueOneScript). Every request is answered.
//
// A batch may name one id twice (concurrent calls with an id of their own):
// only its first request goes to Redis, and the others are answered as a
// later call would be, once the first's answer is known: ErrExists, or the
// first's error when the job may not be stored. In one script call, the
// second write would overwrite the first's record and both would be told
// "queued".
func (q *Queue) enqueueBatch(batch []*enqueueReq) {
	batch, dups := firstOfEachID(batch)
	q.storeBatch(batch)
	answerDuplicates(dups)
}

// duplicate is a request whose id an earlier request of its batch names.
type duplicate struct{ r, first *enqueueReq }

// answerDuplicates answers each duplicate from its first request's answer,
// which must be known: ErrExists, or the first's error when the job may not
// have been stored.
func answerDuplicates(dups []duplicate) {
	for _, d := range dups {
		if err := d.first.err; err != nil && !errors.Is(err, ErrExists) {
			d.r.err = err
		} else {
			d.r.err = ErrExists
		}
		close(d.r.done)
	}
}

// firstOfEachID splits batch into the first request of each id and the
// others.
func firstOfEachID(batch []*enqueueReq) ([]*enqueueReq, []duplicate) {
	if len(batch) < 2 {
		return batch, nil
	}
	byID := make(map[string]*enqueueReq, len(batch))
	var dups []duplicate
	for _, r := range batch {
		if first, ok := byID[r.job.ID]; ok {
			dups = append(dups, duplicate{r, first})
		} else {
			byID[r.job.ID] = r
		}
	}
	if len(dups) == 0 {
		return batch, nil
	}
	firsts := make([]*enqueueReq, 0, len(byID))
	for _, r := range batch {
		if byID[r.job.ID] == r {
			firsts = append(firsts, r)
		}
	}
	return firsts, dups
}

// storeBatch stores a batch whose ids are distinct.
func (q *Queue) storeBatch(batch []*enqueueReq) {
	ctx := context.Background()
	if len(batch) == 1 && batch[0].runAt == 0 && batch[0].job.OrderingKey == "" {
		q.enqueueOne(ctx, batch[0])
		return
	}
	if oneQueue(batch) {
		keys, args := q.enqueueCall(batch)
		q.settle(ctx, batch, enqueueScript.Run(ctx, q.rdb, keys, args...))
		return
	}
	groups := map[string][]*enqueueReq{}
	var order []string
	for _, r := range batch {
		name := r.job.Queue
		if groups[name] == nil {
			order = append(order, name)
		}
		groups[name] = append(groups[name], r)
	}
	cmds := make([]*redis.Cmd, len(order))
	_, _ = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range order {
			keys, args := q.enqueueCall(groups[name])
			cmds[i] = enqueueScript.EvalSha(ctx, p, keys, args...)
		}
		return nil
	})
	for i, name := range order {
		rs, cmd := groups[name], cmds[i]
		if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			keys, args := q.enqueueCall(rs)
			cmd = enqueueScript.Run(ctx, q.rdb, keys, args...)
		}
		q.settle(ctx, rs, cmd)
	}
}

func oneQueue(batch []*enqueueReq) bool {
	for _, r := range batch[1:] {
		if r.job.Queue != batch[0].job.Queue {
			return false
		}
	}
	return true
}

// enqueueKeys are the keys every enqueue script call of queue name starts
// with: st:queued, st:scheduled, ready, scheduled. remember keeps them, so
// that they are built once per queue (enqueueKeysOf).
func enqueueKeys(name string) []string {
	return []string{StateKey(name, "queued"), StateKey(name, "scheduled"), ReadyKey(name), ScheduledKey(name)}
}

// enqueueKeysOf returns enqueueKeys(name), as remember kept them.
func (q *Queue) enqueueKeysOf(name string) []string {
	if keys, ok := q.known.Load(name); ok {
		return keys.([]string)
	}
	return enqueueKeys(name)
}

// enqueueCall builds the keys and arguments of one script call storing rs,
// jobs of one queue.
func (q *Queue) enqueueCall(rs []*enqueueReq) ([]string, []any) {
	name := rs[0].job.Queue
	keys := make([]string, 0, 4+len(rs))
	keys = append(keys, q.enqueueKeysOf(name)...)
	args := make([]any, 0, 3+13*len(rs))
	args = append(args, rs[0].nowMS, ChannelWake, name)
	for _, r := range rs {
		j := r.job
		keys = append(keys, JobKey(name, j.ID))
		if j.OrderingKey != "" {
			keys = append(keys, orderKeys(name, j.OrderingKey)...)
		}
		n := len(args)
		args = append(args, j.ID, r.runAt, readyScore(r.nowMS, j.Priority), j.OrderingKey, 0)
		args = appendRecordFields(args, j)
		args[n+4] = len(args) - n - 5
	}
	return keys, args
}

// enqueueOne stores r, a job to run now without an ordering key, with
// enqueueOneScript.
func (q *Queue) enqueueOne(ctx context.Context, r *enqueueReq) {
	j := r.job
	name := j.Queue
	base := q.enqueueKeysOf(name)
	keys := []string{JobKey(name, j.ID), base[0], base[2]}
	args := make([]any, 0, 16)
	args = append(args, r.nowMS, readyScore(r.nowMS, j.Priority), j.ID, name, j.Kind, j.Args)
	args = appendOptionalFields(args, j)
	code, err := enqueueOneScript.Run(ctx, q.rdb, keys, args...).Int64()
	q.answer(ctx, r, r.nowMS, code, err)
}

// appendRecordFields appends the field/value arguments of a new job's record, but
// for its state and times. A field at its default is left out, and so is
// what the record's key tells (id, queue): every reader applies the
// defaults (attempt 0, ver 1, prio 0, max 1, timeout 0, no target, updated =
// created), and a smaller record is a cheaper enqueue.
func appendRecordFields(fields []any, j NewJob) []any {
	return appendOptionalFields(append(fields, "kind", j.Kind, "args", j.Args), j)
}

// appendOptionalFields appends the fields of appendRecordFields but kind
// and args.
func appendOptionalFields(fields []any, j NewJob) []any {
	if j.Version != 1 {
		fields = append(fields, "ver", j.Version)
	}
	if j.Priority != 0 {
		fields = append(fields, "prio", j.Priority)
	}
	if j.MaxAttempts != 1 {
		fields = append(fields, "max", j.MaxAttempts)
	}
	if j.Timeout > 0 {
		// Whole milliseconds, rounded up: a timeout under 1ms must still
		// bound the attempt, not read as none (0, the kind's).
		fields = append(fields, "timeout", (j.Timeout+time.Millisecond-1)/time.Millisecond)
	}
	if j.Target != "" {
		fields = append(fields, "target_kind", j.Target)
	}
	if j.Parent != "" {
		fields = append(fields, "parent", j.Parent)
	}
	if j.OrderingKey != "" {
		fields = append(fields, "okey", j.OrderingKey)
	}
	return fields
}

// settle answers the requests of one script call from its reply.
func (q *Queue) settle(ctx context.Context, rs []*enqueueReq, cmd *redis.Cmd) {
	codes, err := cmd.Int64Slice()
	if err == nil && len(codes) != len(rs) {
		err = fmt.Errorf("%d answers for %d jobs", len(codes), len(rs))
	}
	for i, r := range rs {
		// The creation time stored is the batch's (its first job's clock
		// reading): the record and the answer must agree.
		var code int64
		if err == nil {
			code = codes[i]
		}
		q.answer(ctx, r, rs[0].nowMS, code, err)
	}
}

// answer answers r from its script's code for it (0 exists, 1 queued, 2
// scheduled) or error; nowMS is the creation time the script stored.
func (q *Queue) answer(ctx context.Context, r *enqueueReq, nowMS, code int64, err error) {
	defer close(r.done)
	if err != nil {
		r.err = fmt.Errorf("enqueue %s: %w", r.job.ID, err)
		return
	}
	r.nowMS = nowMS
	r.res = Enqueued{ID: r.job.ID, State: "queued", CreatedAt: time.UnixMilli(nowMS)}
	switch code {
	case 0:
		r.res, r.err = q.ownRetry(ctx, r.job, nowMS, r.runAt)
	case 2:
		r.res.State = "scheduled"
		r.res.RunAt = time.UnixMilli(r.runAt)
	}
}

// ownRetry tells our own write, landed by a client retry after a lost reply
// (go-redis re-sends a script whose answer timed out), from a job that
// existed before: the record of our write holds this call's creation time
// and every field this call wrote (kind, args, priority, run_at, ...). Our
// own write is a success — the job is accepted and must not be answered
// with an error that invites a duplicate. Another call that asked for the
// very same job in the same millisecond is told the same: the job it asked
// for is stored, once. Any difference is ErrExists.
func (q *Queue) ownRetry(ctx context.Context, j NewJob, nowMS, runAt int64) (Enqueued, error) {
	want := map[string]string{"created": strconv.FormatInt(nowMS, 10)}
	if runAt > 0 {
		want["run_at"] = strconv.FormatInt(runAt, 10)
	}
	fields := appendRecordFields(nil, j)
	for i := 0; i < len(fields); i += 2 {
		want[fields[i].(string)] = fieldString(fields[i+1])
	}
	v, err := q.rdb.HMGet(ctx, JobKey(j.Queue, j.ID), creationFields...).Result()
	if err != nil {
		return Enqueued{}, fmt.Errorf("enqueue %s: %w", j.ID, err)
	}
	for i, f := range creationFields {
		if got, _ := v[i].(string); got != want[f] {
			return Enqueued{}, ErrExists
		}
	}
	e := Enqueued{ID: j.ID, State: "queued", CreatedAt: time.UnixMilli(nowMS)}
	if runAt > 0 {
		e.State, e.RunAt = "scheduled", time.UnixMilli(runAt)
	}
	return e, nil
}

// creationFields are the fields of a job's record that its enqueue writes:
// those of appendRecordFields, the creation time and a scheduled job's
// run_at (which a retry's backoff changes later: a record that moved on
// reads as another job's, ErrExists, the safe answer).
var creationFields = []string{"created", "run_at", "kind", "args", "ver", "prio", "max", "timeout",
	"target_kind", "parent", "okey"}

// fieldString is v, a value of appendRecordFields (a string, []byte or
// integer), as Redis stores it.
func fieldString(v any) string {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return fmt.Sprint(v)
}

// handoffScript stores a new job already leased to the caller, when the
// queue is idle: not paused and nothing ready ahead of it. Otherwise it
// writes nothing. The job starts as Fetch would start it: running, attempt
// 1, with a fencing token and a lease deadline.
//
//	KEYS 1 st:running; 2 ready; 3 leased; 4 tokens; 5 seq; 6 meta; 7 job
//	ARGV 1 now ms; 2 lease deadline ms; 3 id; then field/value arguments of
//	     the record, its state and times included (a field named twice
//	     takes its last value)
//	returns {0} exists, {-1} declined (paused, or jobs ready), {1, token}
var handoffScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[7]) == 1 then return {0} end
if redis.call('HGET', KEYS[6], 'paused') == '1' or redis.call('ZCARD', KEYS[2]) > 0 then return {-1} end
local now, id = ARGV[1], ARGV[3]
local tok = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[7], unpack(ARGV, 4))
redis.call('ZADD', KEYS[1], now, id)
redis.call('HSETNX', KEYS[4], '` + TokensMarker + `', '` + tokensPad + `')
redis.call('HSET', KEYS[4], id, tok)
redis.call('ZADD', KEYS[3], ARGV[2], id)
return {1, tostring(tok)}
`)

// ErrDeclined: Handoff stored nothing because the queue is paused or has
// jobs ready ahead of this one; enqueue it instead.
var ErrDeclined = errors.New("hand-off declined: the queue is paused or busy")

// Handoff stores j already leased to the caller, who runs it at once, when
// its queue is idle (not paused, no job ready ahead of it): the job skips
// the ready set, and its first attempt needs no fetch. The caller owns the
// delivery as if Fetch had returned it: it heartbeats, completes or fails
// it, and a caller that dies loses nothing (the lease expires and the
// reaper returns the job). A job with an ordering key or a run_at is never
// handed off (ErrDeclined), nor one for a busy or paused queue, and then
// nothing is stored. In the rare case where the job is stored but its
// delivery is unknown (a lost reply), Handoff returns no delivery and no
// error: the job runs once its lease has run out.
func (q *Queue) Handoff(ctx context.Context, j NewJob) (Enqueued, *Delivery, error) {
	if j.OrderingKey != "" || !j.RunAt.IsZero() {
		return Enqueued{}, nil, ErrDeclined
	}
	r, err := q.prepare(j)
	if err != nil {
		return Enqueued{}, nil, err
	}
	j = r.job
	if err := q.remember(ctx, j.Queue); err != nil {
		return Enqueued{}, nil, err
	}
	name := j.Queue
	keys := []string{StateKey(name, "running"), ReadyKey(name), LeasedKey(name), TokensKey(name),
		SeqKey(name), MetaKey(name), JobKey(name, j.ID)}
	args := []any{r.nowMS, r.nowMS + q.opts.Lease.Milliseconds(), j.ID}
	args = appendRecordFields(args, j)
	args = append(args, "created", r.nowMS, "started", r.nowMS, "state", "running", "attempt", 1)
	res, err := handoffScript.Run(ctx, q.rdb, keys, args...).Slice()
	if err != nil {
		return Enqueued{}, nil, fmt.Errorf("hand off %s: %w", j.ID, err)
	}
	created := time.UnixMilli(r.nowMS)
	switch toInt(res[0]) {
	case 0:
		// A client retry after a lost reply finds our own write: the job is
		// stored and leased under a token this call never learned. It is
		// accepted; its lease runs out and the reaper puts it in its queue.
		if _, err := q.ownRetry(ctx, j, r.nowMS, 0); err != nil {
			return Enqueued{}, nil, err
		}
		return Enqueued{ID: j.ID, State: "running", CreatedAt: created}, nil, nil
	case -1:
		return Enqueued{}, nil, ErrDeclined
	}
	d := &Delivery{
		ID: j.ID, Queue: name, Kind: j.Kind, Version: j.Version, Args: j.Args, Attempt: 1,
		MaxAttempts: j.MaxAttempts, Timeout: j.Timeout, RunnableSince: created, Token: toString(res[1]),
	}
	return Enqueued{ID: j.ID, State: "running", CreatedAt: created}, d, nil
}

// Admission returns what decides whether a job of queue name and priority
// may be waited for: how many jobs are ready ahead of it (of a higher
// priority, or of its own and ready before it: the ready set's order), and
// whether the queue is paused.
func (q *Queue) Admission(ctx context.Context, name string, priority int) (backlog int64, paused bool, err error) {
	var n *redis.IntCmd
	var p *redis.StringCmd
	until := strconv.FormatFloat(readyScore(q.opts.Clock().UnixMilli(), priority), 'f', -1, 64)
	_, err = q.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		n = pl.ZCount(ctx, ReadyKey(name), "-inf", until)
		p = pl.HGet(ctx, MetaKey(name), "paused")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, false, fmt.Errorf("admission %s: %w", name, err)
	}
	return n.Val(), p.Val() == "1", nil
}
