package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
)

// QueueWeight is one queue a pool drains, with its share.
type QueueWeight struct {
	Name   string
	Weight int
}

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Concurrency is how many jobs run at once (default 10).
	Concurrency int
	// Queues are drained in this order when Strict, else picked at random in
	// proportion to their weights (default: "default" with weight 1).
	Queues []QueueWeight
	// Strict drains a queue only when every queue before it is empty.
	Strict bool
	// Prefetch is how many jobs the pool may lease beyond Concurrency, so
	// that a freed slot finds its next job at hand instead of waiting for a
	// fetch (default 64; negative: none). It leases only as many as its
	// slots are expected to start within prefetchHorizon, judging by how
	// long its handlers ran lately: none before a handler returned, none
	// for handlers that take longer than that, which other processes may as
	// well run. The default is a bound, not a multiple of Concurrency: the
	// horizon sizes the buffer, and a larger buffer means larger fetches,
	// each of which costs Redis about as much as several jobs.
	//
	// A prefetched job is held like a running one (heartbeats,
	// cancellation; it is "running" in Redis), starts when a slot frees,
	// before any job of a later queue when Strict, and is requeued without
	// spending an attempt on shutdown. One that waits for a slot 50 ms (the
	// handlers ahead of it turned slow) goes back to its queue, in its place
	// and without spending an attempt, for an idle process to run; the pool
	// then prefetches nothing until a handler returns. A process that dies
	// (not a shutdown) leaves its prefetched jobs to the reaper, like its
	// running ones: each has spent an attempt.
	Prefetch int
	// ShutdownGrace is how long running jobs may finish after shutdown starts,
	// before their contexts are canceled and they are requeued (default 10s).
	ShutdownGrace time.Duration
	// MaxRunSlice bounds how long one attempt of an iterative job (see
	// Iteration) runs: past it, the job stops at its next checkpoint and goes
	// back to its queue without consuming an attempt, so that long walks share
	// the workers with other jobs and move between processes (default 0: no
	// bound).
	MaxRunSlice time.Duration
	// Backoff is the delay before retry number attempt (default: exponential
	// from 1s, capped at 10m, with full jitter).
	Backoff func(attempt int) time.Duration
	// Logger receives one line per attempt.
	Logger zerolog.Logger
	// Observer is told about attempts (metrics); nil for none.
	Observer Observer
}

// Observer watches attempts, for metrics.
type Observer interface {
	Started(kind, queue string, delay time.Duration)
	Finished(kind, queue, outcome string, d time.Duration)
}

func (c PoolConfig) withDefaults() PoolConfig {
	if c.Concurrency <= 0 {
		c.Concurrency = 10
	}
	if len(c.Queues) == 0 {
		c.Queues = []QueueWeight{{Name: "default", Weight: 1}}
	}
	for i := range c.Queues {
		if c.Queues[i].Weight <= 0 {
			c.Queues[i].Weight = 1
		}
	}
	switch {
	case c.Prefetch == 0:
		c.Prefetch = defaultPrefetch
	case c.Prefetch < 0:
		c.Prefetch = 0
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	return c
}

// DefaultBackoff waits a random time up to min(10m, 1s*2^(attempt-1)) plus one
// second ("full jitter").
func DefaultBackoff(attempt int) time.Duration {
	ceil := time.Second << min(max(attempt-1, 0), 10)
	if ceil > 10*time.Minute {
		ceil = 10 * time.Minute
	}
	return time.Second + rand.N(ceil)
}

// Causes of a handler's context cancellation.
var (
	errCanceledByClient = errors.New("job canceled by a client")
	errShutdown         = errors.New("worker shutting down")
	errLeaseLost        = errors.New("lease lost to another worker")
	errTimeout          = errors.New("attempt timed out")
	errGivenBack        = errors.New("waited too long for a slot: given back to its queue")
)

// errSliceOver is returned, wrapped, by an iterative handler that stopped at a
// checkpoint because its attempt used up PoolConfig.MaxRunSlice: the job is
// requeued without consuming an attempt.
var errSliceOver = errors.New("run slice over")

// defaultPrefetch is the default PoolConfig.Prefetch.
const defaultPrefetch = 64

// Pool leases jobs from its queues and runs them with the registered kinds.
type Pool struct {
	q   *queue.Queue
	reg *Registry
	cfg PoolConfig
	log zerolog.Logger
	// fetchLog, beatLog and announceLog log the failures of the pool's
	// periodic Redis calls: at most 5 lines per 10s each, so that an
	// outage does not flood the log with a line per call, and each kind
	// of failure is seen.
	fetchLog, beatLog, announceLog zerolog.Logger
	rank                           map[string]int // a queue's place in cfg.Queues, when Strict

	mu      sync.Mutex
	running map[string]*active // held jobs: waiting for a slot, handler running, or outcome being recorded
	busy    int                // slots taken by running handlers
	held    int                // slots reserved by Reserve
	// waiting are fetched jobs waiting for a slot, in the order they start
	// (by queue rank when Strict, else as fetched). A job waits only while
	// every slot is taken: busy+held == Concurrency whenever it is not empty.
	waiting  []*active
	fetching int           // jobs asked for by fetches in flight
	runAvg   time.Duration // moving average of handler run times (0: none yet)
	// stalled is set when the pool gave back waiting jobs (giveBack): it
	// prefetches nothing until a handler returns.
	stalled bool
	// giveBackAfter is how long a job may wait for a slot (prefetchGiveBack;
	// tests lengthen it), and giveBackTimer the pending check, nil for none.
	giveBackAfter time.Duration
	giveBackTimer *time.Timer
	freed         chan struct{} // a slot was freed, or a held job recorded
	// accepting is true while Run fetches: Reserve hands slots out only
	// then, and counts each in jobs, so that shutdown waits for them.
	accepting bool
	jobsCtx   context.Context
	jobs      *sync.WaitGroup

	ackMu   sync.Mutex
	ackers  map[string]*acker // one per queue, started by its first success
	ackStop <-chan struct{}   // closed once every job is recorded
	ackWG   sync.WaitGroup    // the ackers' loops

	wakeMu sync.Mutex
	wakeCh chan struct{}        // closed and replaced on every wake-up
	wakes  map[string]uint64    // wake-ups naming each queue, counted
	empty  map[string]emptyMark // queues a fetch emptied, skipped until woken
}

// active is a job the pool holds.
type active struct {
	d       *queue.Delivery
	ctx     context.Context // the attempt's, canceled with a cause
	cancel  context.CancelCauseFunc
	jobs    *sync.WaitGroup // the Run that waits for the job to be recorded
	rank    int             // its queue's place when Strict, else 0
	waiting bool            // in Pool.waiting, under Pool.mu
	heldAt  time.Time       // when it began to wait for a slot
}

// NewPool returns a pool running the kinds of reg on jobs of q.
func NewPool(q *queue.Queue, reg *Registry, cfg PoolConfig) *Pool {
	cfg = cfg.withDefaults()
	p := &Pool{q: q, reg: reg, cfg: cfg, log: cfg.Logger, rank: map[string]int{},
		fetchLog: sampled(cfg.Logger), beatLog: sampled(cfg.Logger), announceLog: sampled(cfg.Logger),
		giveBackAfter: prefetchGiveBack,
		running:       map[string]*active{}, freed: make(chan struct{}, 1), wakeCh: make(chan struct{}),
		wakes: map[string]uint64{}, empty: map[string]emptyMark{}, ackers: map[string]*acker{}}
	for i, w := range cfg.Queues {
		p.wakes[w.Name] = 0
		if cfg.Strict {
			p.rank[w.Name] = i
		}
	}
	return p
}

// Running returns how many jobs run now: handlers running, not counting jobs
// whose handler returned and whose outcome is being recorded.
func (p *Pool) Running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy
}

// Run drains the queues until ctx is done, then shuts down: it stops fetching,
// gives running jobs ShutdownGrace to finish, then cancels them; their
// attempts are requeued without being counted. Run returns when every job has
// been recorded.
func (p *Pool) Run(ctx context.Context) error {
	sub := p.q.Client().Subscribe(ctx, queue.ChannelWake, queue.ChannelCancel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // wait for the subscription
		return fmt.Errorf("subscribe: %w", err)
	}
	// Jobs run under their own context: shutdown of ctx starts the grace
	// period, not their cancellation.
	jobsCtx, stopJobs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopJobs(errShutdown)
	var wg sync.WaitGroup
	p.mu.Lock()
	p.accepting, p.jobsCtx, p.jobs = true, jobsCtx, &wg
	p.mu.Unlock()
	var bg sync.WaitGroup
	done := make(chan struct{}) // closed once every job is recorded, after dispatch
	bg.Add(2)
	go func() { defer bg.Done(); p.listen(ctx, sub.Channel()) }()
	go func() { defer bg.Done(); p.heartbeat(done) }()
	bg.Add(1)
	go func() { defer bg.Done(); p.announce(ctx) }()
	// Each queue's acker records its successes in batches until every job
	// is recorded.
	p.ackMu.Lock()
	p.ackers, p.ackStop = map[string]*acker{}, done
	p.ackMu.Unlock()
	defer p.ackWG.Wait()

	var fetching sync.WaitGroup
	for range min(fetchers, p.cfg.Concurrency) {
		fetching.Go(func() { p.dispatch(ctx, jobsCtx, &wg) })
	}
	fetching.Wait()
	p.mu.Lock()
	p.accepting = false // no more reservations: wg counts every one made
	// Jobs waiting for a slot never started: they go back to their queues
	// now, without spending an attempt, rather than run during the grace.
	waiting := p.waiting
	p.waiting = nil
	for _, a := range waiting {
		a.waiting = false
	}
	if p.giveBackTimer != nil {
		p.giveBackTimer.Stop()
		p.giveBackTimer = nil
	}
	p.mu.Unlock()
	for _, a := range waiting {
		a.cancel(errShutdown)
		go p.abandon(a)
	}

	// Shutdown: no more fetching. Let running jobs finish within the grace.
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.cfg.ShutdownGrace):
		p.log.Warn().Int("running", p.Running()).Msg("shutdown grace over: interrupting jobs")
		stopJobs(errShutdown)
		<-done
	}
	bg.Wait()
	return nil
}

// A queue's acker records its successes: in one round trip, every success
// waiting when it is free ("group commit"), so a busy pool acknowledges many
// jobs per call and an idle one waits for none. A handler's slot is free as
// soon as it returns: the job stays held (heartbeats, cancellation) until its
// outcome is recorded, but the next job need not wait for the round trip.

// maxAckBatch bounds one batch of successes.
const maxAckBatch = 256

// maxRecording bounds the jobs held by a pool whose handlers returned and
// whose successes wait to be recorded, beyond its concurrency: past it, the
// pool fetches no more until the acker catches up.
const maxRecording = 2 * maxAckBatch

// ack is a success waiting to be recorded, and its job, released once it is.
type ack struct {
	c     queue.Completion
	began time.Time
	a     *active
}

// acker records the successes of one queue.
type acker struct {
	mu   sync.Mutex
	acks []ack         // successes waiting to be recorded
	sig  chan struct{} // acks is not empty
}

// complete hands a success to its queue's acker, which records it and
// releases its job.
func (p *Pool) complete(a ack) {
	k := p.ackerOf(a.c.D.Queue)
	k.mu.Lock()
	k.acks = append(k.acks, a)
	k.mu.Unlock()
	select {
	case k.sig <- struct{}{}:
	default:
	}
}

// ackerOf returns the acker of queue name, started on first use. Each
// queue's successes are recorded by an acker of their own, side by side
// across queues: a queue whose slot cannot be written for a while (a Redis
// Cluster node down, whose writes persist tries again) holds up only its
// own successes.
func (p *Pool) ackerOf(name string) *acker {
	p.ackMu.Lock()
	defer p.ackMu.Unlock()
	k := p.ackers[name]
	if k == nil {
		k = &acker{sig: make(chan struct{}, 1)}
		p.ackers[name] = k
		p.ackWG.Add(1)
		go func(stop <-chan struct{}) {
			defer p.ackWG.Done()
			p.ackLoop(name, k, stop)
		}(p.ackStop)
	}
	return k
}

// ackLoop records batches of the successes of queue name until stop is
// closed, which happens once every job is recorded: every success waiting
// when it is free, in one round trip per batch ("group commit").
func (p *Pool) ackLoop(name string, k *acker, stop <-chan struct{}) {
	var batch []ack
	for {
		select {
		case <-k.sig:
		case <-stop:
			return
		}
		k.mu.Lock()
		batch, k.acks = k.acks, batch[:0]
		k.mu.Unlock()
		for i := 0; i < len(batch); i += maxAckBatch {
			p.flush(name, batch[i:min(i+maxAckBatch, len(batch))])
		}
		clear(batch) // keep no job alive until the next batch
	}
}

// flush records one batch of successes of queue name, in one script call,
// within its own bound.
func (p *Pool) flush(name string, batch []ack) {
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	cs := make([]queue.Completion, len(batch))
	for i, a := range batch {
		cs[i] = a.c
	}
	var errs []error
	err := persist(ctx, func(ctx context.Context) (err error) {
		errs, err = p.q.CompleteMany(ctx, name, cs)
		return err
	})
	for i, a := range batch {
		werr := err
		if err == nil {
			werr = errs[i]
		}
		p.finished(a.c.D, a.began, "succeeded", "succeeded", nil, werr)
		p.release(a.a)
	}
}

// recordTimeout bounds the write of an attempt's outcome, tries again
// included (persist): an outage shorter than it loses no outcome.
const recordTimeout = 10 * time.Second

// fetchers is how many fetches a pool keeps in flight. Leasing and starting
// a batch takes two round trips: with one fetch at a time, a pool of quick
// handlers would spend much of its time waiting for them. Each fetch asks
// for at most half of what the pool may hold (Concurrency + Prefetch), so
// together they never exceed it.
const fetchers = 2

// dispatch fetches jobs while the pool has room for them, and waits for a
// wake-up (an enqueue into an empty queue) otherwise. It never sleeps on a
// timer except for a one-second safety net, and for fetchLinger while it
// drains a backlog (see reserve). A fetched job starts at once if a slot is
// free, else waits for one (Prefetch).
func (p *Pool) dispatch(ctx, jobsCtx context.Context, wg *sync.WaitGroup) {
	draining := false // the last fetch got jobs
	for ctx.Err() == nil {
		wake := p.wakeChan()
		n := p.reserve(ctx, draining)
		if n == 0 {
			continue
		}
		got := 0
		for _, t := range p.order() {
			ds, emptied, err := p.q.FetchUntilEmpty(ctx, t.name, n-got)
			if err != nil {
				if ctx.Err() == nil {
					p.fetchLog.Error().Err(err).Str("queue", t.name).Msg("fetch failed")
					sleep(ctx, 100*time.Millisecond)
				}
				break
			}
			if emptied {
				p.markEmpty(t)
			}
			p.place(jobsCtx, ds, wg)
			if got += len(ds); got >= n {
				break
			}
		}
		p.fetched(n)
		if draining = got > 0; draining {
			continue
		}
		// Nothing was runnable: only a wake-up (or the safety net) brings
		// work. A freed slot does not, and a fetch on every freed slot
		// would take jobs that Reserve could hand its slot to.
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// fetchLinger is how long a pool draining a backlog waits for room for half
// its jobs before it fetches fewer.
const fetchLinger = 500 * time.Microsecond

// reserve waits until the pool has room for more jobs (free slots, and free
// places among the jobs waiting for one), reserves up to half of what the
// pool may hold and returns how many it reserved (0 when ctx is done). A
// fetch costs Redis about as much as several jobs do: while it drains a
// backlog (linger), a pool whose handlers are quick would otherwise fetch in
// slivers, a job or two at a time, so it waits up to fetchLinger for room
// for half. An idle pool fetches at once.
func (p *Pool) reserve(ctx context.Context, linger bool) int {
	p.mu.Lock()
	most := (p.cfg.Concurrency + p.prefetchLocked() + 1) / 2
	p.mu.Unlock()
	want := 1
	if linger {
		want = most
	}
	var expired <-chan time.Time
	for {
		p.mu.Lock()
		room := p.roomLocked()
		if room >= want {
			n := min(room, most)
			p.fetching += n
			p.mu.Unlock()
			if room > n {
				p.signalFreed() // let the other fetcher have the rest
			}
			return n
		}
		p.mu.Unlock()
		if room > 0 && expired == nil {
			t := time.NewTimer(fetchLinger)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-ctx.Done():
			return 0
		case <-p.freed:
		case <-expired:
			want = 1
		}
	}
}

// prefetchHorizon bounds prefetching: a pool leases beyond its concurrency
// only the jobs its slots are expected to start within this time.
const prefetchHorizon = 2 * time.Millisecond

// roomLocked returns how many more jobs the pool may fetch: it holds at most
// Concurrency + prefetchLocked() jobs running, waiting or being fetched, and
// at most maxRecording whose successes wait to be recorded.
func (p *Pool) roomLocked() int {
	held := p.busy + p.held + len(p.waiting) + p.fetching
	recording := len(p.running) - p.busy - len(p.waiting)
	return min(p.cfg.Concurrency+p.prefetchLocked()-held, maxRecording-recording)
}

// prefetchGiveBack is how long a prefetched job waits for a slot before the
// pool gives it back to its queue, in its place and without spending an
// attempt (giveBack). Its slots were expected to start it within
// prefetchHorizon: a wait 25 times as long means the handlers ahead of it
// turned slow, and another process may as well run it now.
const prefetchGiveBack = 25 * prefetchHorizon

// prefetchLocked returns how many jobs the pool leases beyond its
// concurrency now: as many as its slots start within prefetchHorizon at the
// handlers' average run time, at most PoolConfig.Prefetch; none after it
// gave jobs back, until a handler returns.
func (p *Pool) prefetchLocked() int {
	if p.cfg.Prefetch == 0 || p.runAvg == 0 || p.stalled {
		return 0
	}
	return int(min(int64(p.cfg.Prefetch), int64(p.cfg.Concurrency)*int64(prefetchHorizon)/int64(p.runAvg)))
}

// ranLocked takes a handler's run time into the average, weighing the last
// 1/8.
func (p *Pool) ranLocked(d time.Duration) {
	p.stalled = false
	d = max(d, time.Nanosecond)
	if p.runAvg == 0 {
		p.runAvg = d
		return
	}
	p.runAvg += (d - p.runAvg) / 8
}

// fetched ends a fetch that reserved room for n jobs (see reserve).
func (p *Pool) fetched(n int) {
	p.mu.Lock()
	p.fetching -= n
	p.mu.Unlock()
	p.signalFreed()
}

// unreserve returns n slots reserved by Reserve that no job filled.
func (p *Pool) unreserve(n int) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	p.held -= n
	run := p.nextLocked(nil)
	p.mu.Unlock()
	for _, a := range run {
		go p.work(a)
	}
	p.signalFreed()
}

// place holds fetched deliveries: each waits for a slot, in rank order, and
// the free slots take the first.
func (p *Pool) place(jobsCtx context.Context, ds []*queue.Delivery, wg *sync.WaitGroup) {
	if len(ds) == 0 {
		return
	}
	wg.Add(len(ds))
	now := time.Now()
	p.mu.Lock()
	for _, d := range ds {
		a := p.hold(jobsCtx, d, wg)
		a.heldAt = now
		// Insert after every job of the same or a higher-ranked queue.
		i := len(p.waiting)
		for i > 0 && p.waiting[i-1].rank > a.rank {
			i--
		}
		a.waiting = true
		p.waiting = slices.Insert(p.waiting, i, a)
	}
	run := p.nextLocked(nil)
	if len(p.waiting) > 0 && p.giveBackTimer == nil {
		p.giveBackTimer = time.AfterFunc(p.giveBackAfter, p.giveBack)
	}
	p.mu.Unlock()
	for _, a := range run {
		go p.work(a)
	}
}

// giveBack gives the jobs that have waited for a slot for giveBackAfter back
// to their queues, each in its place and without spending an attempt, so
// that an idle process can run them while this one's handlers are slow; the
// pool then prefetches nothing until a handler returns. It checks again when
// the next waiting job is due. It runs on a timer armed by place.
func (p *Pool) giveBack() {
	now := time.Now()
	p.mu.Lock()
	p.giveBackTimer = nil
	if !p.accepting { // shutting down: Run requeues the waiting jobs
		p.mu.Unlock()
		return
	}
	var back []*active
	next := p.giveBackAfter
	kept := p.waiting[:0]
	for _, a := range p.waiting {
		if waited := now.Sub(a.heldAt); waited < p.giveBackAfter {
			kept = append(kept, a)
			next = min(next, p.giveBackAfter-waited)
			continue
		}
		a.waiting = false
		back = append(back, a)
	}
	clear(p.waiting[len(kept):])
	p.waiting = kept
	if len(back) > 0 {
		p.stalled = true
	}
	if len(p.waiting) > 0 {
		p.giveBackTimer = time.AfterFunc(next, p.giveBack)
	}
	p.mu.Unlock()
	for _, a := range back {
		a.cancel(errGivenBack)
		go p.abandon(a)
	}
}

// hold registers a job as held by the pool (heartbeats, cancellation), under
// p.mu. The caller counts it in jobs.
func (p *Pool) hold(jobsCtx context.Context, d *queue.Delivery, jobs *sync.WaitGroup) *active {
	ctx, cancel := context.WithCancelCause(jobsCtx)
	a := &active{d: d, ctx: ctx, cancel: cancel, jobs: jobs, rank: p.rank[d.Queue]}
	p.running[d.ID] = a
	return a
}

// nextLocked takes waiting jobs into the free slots, appending them to run.
func (p *Pool) nextLocked(run []*active) []*active {
	for len(p.waiting) > 0 && p.busy+p.held < p.cfg.Concurrency {
		a := p.waiting[0]
		p.waiting[0] = nil
		p.waiting = p.waiting[1:]
		a.waiting = false
		p.busy++
		run = append(run, a)
	}
	return run
}

// queueTry is a queue to fetch from, with its count of wake-ups when the
// fetch began.
type queueTry struct {
	name  string
	wakes uint64
}

// emptyMark is a queue that a fetch emptied: at, and its count of wake-ups
// when that fetch began.
type emptyMark struct {
	wakes uint64
	at    time.Time
}

// emptyFor is how long a queue that a fetch emptied is skipped without a
// wake-up naming it: a safety net for a lost pub/sub message.
const emptyFor = time.Second

// markEmpty records that a fetch from t.name emptied it. A wake-up naming
// the queue since the fetch began (counted in p.wakes) lifts the mark, so a
// job enqueued while the fetch ran is never skipped.
func (p *Pool) markEmpty(t queueTry) {
	p.wakeMu.Lock()
	p.empty[t.name] = emptyMark{wakes: t.wakes, at: time.Now()}
	p.wakeMu.Unlock()
}

// order returns the queues to try, strict or weighted at random, leaving out
// those known to be empty: emptied by a fetch, and not named by a wake-up
// since.
func (p *Pool) order() []queueTry {
	qs := p.cfg.Queues
	out := make([]queueTry, 0, len(qs))
	type candidate struct {
		Name   string
		Weight int
		wakes  uint64
	}
	left := make([]candidate, 0, len(qs))
	now := time.Now()
	p.wakeMu.Lock()
	for _, q := range qs {
		w := p.wakes[q.Name]
		if e, ok := p.empty[q.Name]; ok {
			if e.wakes == w && now.Sub(e.at) < emptyFor {
				continue
			}
			delete(p.empty, q.Name)
		}
		if p.cfg.Strict || len(qs) == 1 {
			out = append(out, queueTry{name: q.Name, wakes: w})
		} else {
			left = append(left, candidate{Name: q.Name, Weight: q.Weight, wakes: w})
		}
	}
	p.wakeMu.Unlock()
	// Weighted random order without replacement.
	for len(left) > 0 {
		total := 0
		for _, q := range left {
			total += q.Weight
		}
		n := rand.N(total)
		for i, q := range left {
			if n < q.Weight {
				out = append(out, queueTry{name: q.Name, wakes: q.wakes})
				left = append(left[:i], left[i+1:]...)
				break
			}
			n -= q.Weight
		}
	}
	return out
}

func (p *Pool) wakeChan() chan struct{} {
	p.wakeMu.Lock()
	defer p.wakeMu.Unlock()
	return p.wakeCh
}

// wake wakes the dispatchers, for a queue turned runnable named by name (a
// ChannelWake message).
func (p *Pool) wake(name string) {
	p.wakeMu.Lock()
	if n, ok := p.wakes[name]; ok {
		p.wakes[name] = n + 1
	}
	close(p.wakeCh)
	p.wakeCh = make(chan struct{})
	p.wakeMu.Unlock()
}

// listen turns pub/sub messages into wake-ups and cancellations.
func (p *Pool) listen(ctx context.Context, ch <-chan *redis.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m.Channel {
			case queue.ChannelWake:
				p.wake(m.Payload)
			case queue.ChannelCancel:
				p.interrupt(m.Payload, errCanceledByClient)
			}
		}
	}
}

// announce tells Redis this process is alive every few seconds, for the
// dashboard's list of live workers, and retires it on shutdown.
func (p *Pool) announce(ctx context.Context) {
	host, _ := os.Hostname()
	w := api.Worker{ID: fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.N(1<<16)), Hostname: host,
		PID: os.Getpid(), Concurrency: p.cfg.Concurrency, StartedAt: time.Now().UTC()}
	for _, q := range p.cfg.Queues {
		w.Queues = append(w.Queues, q.Name)
	}
	t := time.NewTicker(announceEvery)
	defer t.Stop()
	for {
		w.Running = p.Running()
		if err := p.q.Announce(ctx, w, 3*announceEvery); err != nil && ctx.Err() == nil {
			p.announceLog.Warn().Err(err).Msg("announce failed")
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = p.q.Retire(rctx, w.ID)
			cancel()
			return
		case <-t.C:
		}
	}
}

// announceEvery is how often a pool announces itself.
const announceEvery = 5 * time.Second

// interrupt cancels the handler of job id if it runs here.
// A job waiting for a slot is let go of at once, without running.
func (p *Pool) interrupt(id string, cause error) {
	p.mu.Lock()
	a := p.running[id]
	wasWaiting := a != nil && a.waiting
	if wasWaiting {
		p.waiting = slices.DeleteFunc(p.waiting, func(w *active) bool { return w == a })
		a.waiting = false
	}
	p.mu.Unlock()
	if a == nil {
		return
	}
	a.cancel(cause)
	if wasWaiting {
		p.signalFreed()
		go p.abandon(a)
	}
}

// heartbeat renews the leases of running jobs every third of the lease, and
// stops handlers whose lease was lost or whose job was canceled. It keeps
// beating through the shutdown grace, until jobsDone: the leases of jobs
// still running must stay alive until they are all recorded.
func (p *Pool) heartbeat(jobsDone <-chan struct{}) {
	t := time.NewTicker(p.q.Options().Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-jobsDone:
			return
		case <-t.C:
		}
		p.beat(context.Background())
	}
}

func (p *Pool) beat(ctx context.Context) {
	byQueue := map[string][]*queue.Delivery{}
	p.mu.Lock()
	for _, a := range p.running {
		byQueue[a.d.Queue] = append(byQueue[a.d.Queue], a.d)
	}
	p.mu.Unlock()
	for name, ds := range byQueue {
		codes, err := p.q.Heartbeat(ctx, name, ds)
		if err != nil {
			p.beatLog.Error().Err(err).Str("queue", name).Msg("heartbeat failed")
			continue
		}
		for i, c := range codes {
			switch c {
			case queue.LeaseLost:
				p.interrupt(ds[i].ID, errLeaseLost)
			case queue.LeaseCanceled:
				p.interrupt(ds[i].ID, errCanceledByClient)
			}
		}
	}
}

// signalFreed wakes the dispatcher if it waits for a slot.
func (p *Pool) signalFreed() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

func (p *Pool) start(jobsCtx context.Context, d *queue.Delivery, wg *sync.WaitGroup) {
	wg.Add(1)
	p.mu.Lock()
	a := p.hold(jobsCtx, d, wg)
	p.held-- // the slot Reserve reserved
	p.busy++
	p.mu.Unlock()
	go p.work(a)
}

// work runs a, which has a slot, then the jobs that wait for the slot when
// a's success leaves it free at once.
func (p *Pool) work(a *active) {
	for a != nil {
		a = p.execute(a)
	}
}

// release lets go of a job once its outcome is recorded (or its record
// failed).
func (p *Pool) release(a *active) {
	p.mu.Lock()
	if p.running[a.d.ID] == a {
		delete(p.running, a.d.ID)
	}
	p.mu.Unlock()
	p.signalFreed()
	a.jobs.Done()
}

// execute runs one attempt of a, which has a slot, and records its outcome.
// It frees the slot as soon as the handler returns, to the first job waiting
// for one if any. A success is handed to the acker, which releases a once it
// is recorded, and execute returns the waiting job that took the slot, for
// the caller to run next. Otherwise execute starts that job on its own,
// records the outcome itself, releases a and returns nil.
func (p *Pool) execute(a *active) (next *active) {
	d, ctx := a.d, a.ctx
	defer a.cancel(nil)
	began := time.Now()
	if p.cfg.Observer != nil {
		p.cfg.Observer.Started(d.Kind, d.Queue, p.q.Now().Sub(d.RunnableSince))
	}
	if d.Timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, d.Timeout, errTimeout)
		defer stop()
	}
	var (
		res Result
		err error
	)
	if cause := context.Cause(ctx); cause != nil {
		err = cause // interrupted while it waited for its slot
	} else {
		res, err = p.invoke(ctx, d)
	}
	ran := time.Since(began)
	p.mu.Lock()
	p.ranLocked(ran)
	p.busy--
	if run := p.nextLocked(nil); len(run) > 0 {
		next = run[0]
	}
	p.mu.Unlock()
	p.signalFreed()
	if err == nil {
		var o queue.Outcome
		if o, err = p.outcome(d, res); err == nil {
			p.complete(ack{c: queue.Completion{D: d, O: o}, began: began, a: a})
			return next
		}
	}
	if next != nil {
		go p.work(next) // the next job need not wait for this record
	}
	p.record(ctx, d, began, err)
	p.release(a)
	return nil
}

// abandon records the end of a job that never started (it waited for a slot)
// and was interrupted: canceled, lease lost or shutdown.
func (p *Pool) abandon(a *active) {
	p.record(a.ctx, a.d, time.Time{}, context.Cause(a.ctx))
	p.release(a)
}

// record records an attempt of d that did not succeed, with the handler's
// error err, under the attempt's context ctx.
func (p *Pool) record(ctx context.Context, d *queue.Delivery, began time.Time, err error) {
	mode, doc := p.classify(ctx, err)
	var (
		state string
		werr  error
	)
	if errors.Is(context.Cause(ctx), errLeaseLost) {
		werr = queue.ErrLeaseLost
	} else {
		cause := err.Error()
		var pe *panicError
		if errors.As(err, &pe) {
			cause += "\n" + string(pe.stack)
		}
		// Final writes outlive the attempt's context, with their own bound.
		wctx, stop := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		werr = persist(wctx, func(ctx context.Context) (err error) {
			state, err = p.q.Fail(ctx, d, mode, p.q.Now().Add(p.cfg.Backoff(d.Attempt)), cause, doc)
			return err
		})
		stop()
	}
	p.finished(d, began, mode, state, err, werr)
}

// sampled is log, at most 5 lines per 10s.
func sampled(log zerolog.Logger) zerolog.Logger {
	return log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})
}

// persist makes write, a record of what an attempt did, until it is made,
// it fails for a reason other than Redis being unavailable
// (queue.Unavailable), or ctx, which bounds it, is done: an outage shorter
// than that bound does not turn a success into a lost lease and a second
// run. A write whose reply was lost and that is made again finds the lease
// already ended (ErrLeaseLost): what the attempt did was recorded, and the
// log says "lost".
func persist(ctx context.Context, write func(context.Context) error) error {
	wait := persistFirstWait
	for {
		err := write(ctx)
		if err == nil || !queue.Unavailable(err) || errors.Is(err, redis.ErrClosed) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, persistMaxWait)
	}
}

// persistFirstWait and persistMaxWait bound the waits of persist between
// tries: they double from the first to the second.
const (
	persistFirstWait = 50 * time.Millisecond
	persistMaxWait   = time.Second
)

// finished reports an attempt that ended with outcome (succeeded, or a Fail
// mode) and the handler's error err, recorded as state, or not when werr is
// not nil: to the observer and in the log. A zero began is a job that never
// started (it waited for a slot): the observer, told of attempts, is not
// told of it.
func (p *Pool) finished(d *queue.Delivery, began time.Time, outcome, state string, err, werr error) {
	ev := p.log.Info()
	switch {
	case werr != nil:
		ev = p.log.Error().AnErr("record_error", werr)
		state = "unrecorded"
	case err == nil:
	case outcome == queue.FailRequeue, outcome == queue.FailReturn:
		ev = ev.Err(err) // an interruption, not a failure
	default:
		ev = p.log.Warn().Err(err)
	}
	var took time.Duration
	label := outcomeLabel(outcome, state, werr)
	if !began.IsZero() {
		took = time.Since(began)
		if p.cfg.Observer != nil {
			p.cfg.Observer.Finished(d.Kind, d.Queue, label, took)
		}
	}
	// outcome says what happened (the last attempt of a retryable failure
	// is "failed", not "retried"); mode is what the attempt asked for.
	ev.Str("job_id", d.ID).Str("kind", d.Kind).Str("queue", d.Queue).Int("attempt", d.Attempt).
		Dur("duration", took).Str("outcome", label).Str("mode", outcome).Str("state", state).Msg("job attempt")
}

// panicError is a recovered handler panic. The attempt fails retryably; the
// stack is kept in the job's attempt history, not in the error clients see.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// outcomeLabel names how an attempt ended, for metrics and the log:
// succeeded, failed, canceled, retried (a retry is due), requeued
// (interrupted, no attempt spent), queued (handed back before it started),
// lost (the lease was taken over) or unrecorded.
func outcomeLabel(mode, state string, werr error) string {
	switch {
	case errors.Is(werr, queue.ErrLeaseLost):
		return "lost"
	case werr != nil:
		return "unrecorded"
	case mode == queue.FailRequeue:
		return "requeued"
	case state == "retrying":
		return "retried"
	}
	return state
}

// invoke runs the handler, turning a panic into a failed attempt (retryable)
// that carries the stack.
func (p *Pool) invoke(ctx context.Context, d *queue.Delivery) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	e := p.reg.get(d.Kind)
	if e == nil {
		return Result{}, fmt.Errorf("%w: %s", errUnknownKind, d.Kind)
	}
	job := &Job{ID: d.ID, Queue: d.Queue, Kind: d.Kind, Attempt: d.Attempt, MaxAttempts: d.MaxAttempts,
		ArgsVersion: d.Version, Checkpoint: d.Checkpoint,
		report: func(ctx context.Context, pct float64, msg string, ckpt []byte) error {
			return p.q.Progress(ctx, d, pct, msg, ckpt)
		}}
	if slice := p.cfg.MaxRunSlice; slice > 0 {
		end := time.Now().Add(slice)
		job.yield = func() bool { return !time.Now().Before(end) }
	}
	res, err = e.run(ctx, job, d.Args)
	if err == nil && ctx.Err() != nil && context.Cause(ctx) != errTimeout {
		// The handler ignored its context; it still finished, so keep it.
		return res, nil
	}
	return res, err
}

// outcome encodes a handler's result for the queue.
func (p *Pool) outcome(d *queue.Delivery, res Result) (queue.Outcome, error) {
	var o queue.Outcome
	if res.Value != nil {
		b, err := json.Marshal(res.Value)
		if err != nil {
			return o, Permanent(fmt.Errorf("encode result: %w", err))
		}
		o.Result = b
	}
	if res.Target != nil {
		e := p.reg.get(d.Kind)
		if e == nil || e.info.Target == "" {
			return o, Permanent(fmt.Errorf("kind %s returned a target but declares no Target collection", d.Kind))
		}
		o.TargetURL = "/v1/" + e.info.Target + "/" + d.ID
		o.TargetType = res.Target.ContentType
		o.TargetBody = res.Target.Body
	}
	for _, f := range res.FollowUps {
		j, err := p.followUp(d, f)
		if err != nil {
			return o, Permanent(err)
		}
		o.FollowUps = append(o.FollowUps, j)
	}
	return o, nil
}

// followUp turns a handler's follow-up into a job of a registered kind with
// valid args, child of d.
func (p *Pool) followUp(d *queue.Delivery, f FollowUp) (queue.NewJob, error) {
	info, ok := p.reg.Lookup(f.Kind)
	if !ok {
		return queue.NewJob{}, fmt.Errorf("follow-up of kind %q: not registered", f.Kind)
	}
	args, err := json.Marshal(f.Args)
	if err != nil {
		return queue.NewJob{}, fmt.Errorf("follow-up of kind %q: encode args: %w", f.Kind, err)
	}
	if f.Args == nil {
		args = []byte("{}")
	}
	if errs := p.reg.Validate(f.Kind, args); len(errs) > 0 {
		return queue.NewJob{}, fmt.Errorf("follow-up of kind %q: args: %s %s", f.Kind, errs[0].Field, errs[0].Message)
	}
	j := queue.NewJob{Queue: info.Queue, Kind: info.Name, Version: info.Version, Args: args,
		Priority: f.Priority, MaxAttempts: info.MaxAttempts, Timeout: info.Timeout, Target: info.Target,
		OrderingKey: f.OrderingKey, Parent: d.ID}
	if f.Queue != "" {
		j.Queue = f.Queue
	}
	if !queue.ValidQueueName(j.Queue) {
		return queue.NewJob{}, fmt.Errorf("follow-up of kind %q: %w", f.Kind, queue.ErrBadQueueName)
	}
	if f.MaxAttempts > 0 {
		j.MaxAttempts = f.MaxAttempts
	}
	j.ID = p.q.NewID(j.Queue)
	return j, nil
}

// classify picks the failure mode of an error and the document clients see.
func (p *Pool) classify(ctx context.Context, err error) (string, queue.ErrorDoc) {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errCanceledByClient):
		return queue.FailCanceled, queue.CanceledDoc
	case errors.Is(cause, errShutdown), errors.Is(err, errSliceOver):
		return queue.FailRequeue, queue.ErrorDoc{}
	case errors.Is(cause, errGivenBack):
		return queue.FailReturn, queue.ErrorDoc{}
	case errors.Is(cause, errTimeout):
		return queue.FailRetry, queue.ErrorDoc{Type: "https://offload.dev/problems/timeout",
			Title: "Job timed out", Status: 504, Detail: err.Error()}
	case IsPermanent(err):
		return queue.FailPermanent, queue.ErrorDoc{Type: "https://offload.dev/problems/job-failed",
			Title: "Job failed", Status: 422, Detail: err.Error()}
	}
	return queue.FailRetry, queue.ErrorDoc{Type: "https://offload.dev/problems/job-failed",
		Title: "Job failed", Status: 500, Detail: err.Error()}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
