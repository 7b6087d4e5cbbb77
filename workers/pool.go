package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/debug"
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
)

// errSliceOver is returned, wrapped, by an iterative handler that stopped at a
// checkpoint because its attempt used up PoolConfig.MaxRunSlice: the job is
// requeued without consuming an attempt.
var errSliceOver = errors.New("run slice over")

// Pool leases jobs from its queues and runs them with the registered kinds.
type Pool struct {
	q   *queue.Queue
	reg *Registry
	cfg PoolConfig
	log zerolog.Logger

	mu      sync.Mutex
	running map[string]*active
	freed   chan struct{} // a slot was freed

	acks chan ack // successes waiting to be recorded

	wakeMu sync.Mutex
	wakeCh chan struct{} // closed and replaced on every wake-up
}

type active struct {
	d      *queue.Delivery
	cancel context.CancelCauseFunc
}

// NewPool returns a pool running the kinds of reg on jobs of q.
func NewPool(q *queue.Queue, reg *Registry, cfg PoolConfig) *Pool {
	cfg = cfg.withDefaults()
	return &Pool{q: q, reg: reg, cfg: cfg, log: cfg.Logger,
		running: map[string]*active{}, freed: make(chan struct{}, 1), wakeCh: make(chan struct{}),
		acks: make(chan ack)}
}

// Running returns how many jobs run now.
func (p *Pool) Running() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.running)
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
	var bg sync.WaitGroup
	done := make(chan struct{}) // closed once every job is recorded, after dispatch
	bg.Add(2)
	go func() { defer bg.Done(); p.listen(ctx, sub.Channel()) }()
	go func() { defer bg.Done(); p.heartbeat(done) }()
	bg.Add(1)
	go func() { defer bg.Done(); p.announce(ctx) }()
	// The ackers record successes in batches until every job is recorded.
	var ackers sync.WaitGroup
	for range ackWorkers {
		ackers.Add(1)
		go func() { defer ackers.Done(); p.ackLoop(done) }()
	}
	defer ackers.Wait()

	p.dispatch(ctx, jobsCtx, &wg)

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

// ackWorkers is how many goroutines record successes; each records, in one
// round trip, every success waiting when it is free ("group commit"), so a
// busy pool acknowledges many jobs per call and an idle one waits for none.
const ackWorkers = 2

// maxAckBatch bounds one batch of successes.
const maxAckBatch = 256

type ack struct {
	c    queue.Completion
	done chan error
}

// complete hands a success to the ackers and waits until it is recorded.
func (p *Pool) complete(ctx context.Context, d *queue.Delivery, o queue.Outcome) error {
	a := ack{c: queue.Completion{D: d, O: o}, done: make(chan error, 1)}
	select {
	case p.acks <- a:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-a.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ackLoop records batches of successes until stop is closed and none waits.
func (p *Pool) ackLoop(stop <-chan struct{}) {
	batch := make([]ack, 0, maxAckBatch)
	for {
		select {
		case a := <-p.acks:
			batch = append(batch[:0], a)
		case <-stop:
			return
		}
	fill:
		for len(batch) < maxAckBatch {
			select {
			case a := <-p.acks:
				batch = append(batch, a)
			default:
				break fill
			}
		}
		p.flush(batch)
	}
}

// flush records one batch, one script call per queue.
func (p *Pool) flush(batch []ack) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	byQueue := map[string][]ack{}
	for _, a := range batch {
		byQueue[a.c.D.Queue] = append(byQueue[a.c.D.Queue], a)
	}
	for name, as := range byQueue {
		cs := make([]queue.Completion, len(as))
		for i, a := range as {
			cs[i] = a.c
		}
		errs, err := p.q.CompleteMany(ctx, name, cs)
		for i, a := range as {
			if err != nil {
				a.done <- err
			} else {
				a.done <- errs[i]
			}
		}
	}
}

// dispatch fetches jobs while there are free slots, and waits for a wake-up
// (an enqueue into an empty queue) or a freed slot otherwise. It never sleeps
// on a timer except for a one-second safety net.
func (p *Pool) dispatch(ctx, jobsCtx context.Context, wg *sync.WaitGroup) {
	for ctx.Err() == nil {
		wake := p.wakeChan()
		free := p.cfg.Concurrency - p.Running()
		if free <= 0 {
			select {
			case <-ctx.Done():
			case <-p.freed:
			}
			continue
		}
		got := 0
		for _, name := range p.order() {
			ds, err := p.q.Fetch(ctx, name, free-got)
			if err != nil {
				if ctx.Err() == nil {
					p.log.Error().Err(err).Str("queue", name).Msg("fetch failed")
					sleep(ctx, 100*time.Millisecond)
				}
				break
			}
			for _, d := range ds {
				p.start(jobsCtx, d, wg)
			}
			if got += len(ds); got >= free {
				break
			}
		}
		if got > 0 {
			continue
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-p.freed:
		case <-t.C:
		}
		t.Stop()
	}
}

// order returns the queues to try, strict or weighted at random.
func (p *Pool) order() []string {
	qs := p.cfg.Queues
	out := make([]string, 0, len(qs))
	if p.cfg.Strict || len(qs) == 1 {
		for _, q := range qs {
			out = append(out, q.Name)
		}
		return out
	}
	// Weighted random order without replacement.
	left := append([]QueueWeight(nil), qs...)
	for len(left) > 0 {
		total := 0
		for _, q := range left {
			total += q.Weight
		}
		n := rand.N(total)
		for i, q := range left {
			if n < q.Weight {
				out = append(out, q.Name)
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

func (p *Pool) wake() {
	p.wakeMu.Lock()
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
				p.wake()
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
			p.log.Warn().Err(err).Msg("announce failed")
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
func (p *Pool) interrupt(id string, cause error) {
	p.mu.Lock()
	a := p.running[id]
	p.mu.Unlock()
	if a != nil {
		a.cancel(cause)
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
			p.log.Error().Err(err).Str("queue", name).Msg("heartbeat failed")
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

func (p *Pool) start(jobsCtx context.Context, d *queue.Delivery, wg *sync.WaitGroup) {
	ctx, cancel := context.WithCancelCause(jobsCtx)
	p.mu.Lock()
	p.running[d.ID] = &active{d: d, cancel: cancel}
	p.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			cancel(nil)
			p.mu.Lock()
			delete(p.running, d.ID)
			p.mu.Unlock()
			select {
			case p.freed <- struct{}{}:
			default:
			}
		}()
		p.execute(ctx, d)
	}()
}

// execute runs one attempt and records its outcome.
func (p *Pool) execute(ctx context.Context, d *queue.Delivery) {
	began := time.Now()
	if p.cfg.Observer != nil {
		p.cfg.Observer.Started(d.Kind, d.Queue, p.q.Now().Sub(d.RunnableSince))
	}
	if d.Timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, d.Timeout, errTimeout)
		defer stop()
	}
	res, err := p.invoke(ctx, d)
	// Final writes outlive the attempt's context, with their own bound.
	wctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	ev := p.log.Info()
	outcome, state := "succeeded", "succeeded"
	var werr error
	if err == nil {
		var o queue.Outcome
		if o, err = p.outcome(d, res); err == nil {
			werr = p.complete(wctx, d, o)
		}
	}
	if err != nil {
		mode, doc := p.classify(ctx, err)
		outcome = mode
		if mode == queue.FailRequeue {
			ev = p.log.Info().Err(err) // an interruption, not a failure
		} else {
			ev = p.log.Warn().Err(err)
		}
		if errors.Is(context.Cause(ctx), errLeaseLost) {
			werr = queue.ErrLeaseLost
		} else {
			cause := err.Error()
			var pe *panicError
			if errors.As(err, &pe) {
				cause += "\n" + string(pe.stack)
			}
			state, werr = p.q.Fail(wctx, d, mode, p.q.Now().Add(p.cfg.Backoff(d.Attempt)), cause, doc)
		}
	}
	if werr != nil {
		ev = p.log.Error().AnErr("record_error", werr)
		state = "unrecorded"
	}
	if p.cfg.Observer != nil {
		p.cfg.Observer.Finished(d.Kind, d.Queue, outcomeLabel(outcome, state, werr), time.Since(began))
	}
	ev.Str("job_id", d.ID).Str("kind", d.Kind).Str("queue", d.Queue).Int("attempt", d.Attempt).
		Dur("duration", time.Since(began)).Str("outcome", outcome).Str("state", state).Msg("job attempt")
}

// panicError is a recovered handler panic. The attempt fails retryably; the
// stack is kept in the job's attempt history, not in the error clients see.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// outcomeLabel names how an attempt ended, for metrics.
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
