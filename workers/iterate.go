package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Iteration declares a job that walks a collection from a cursor, one step
// (an item or a batch) at a time, after Shopify's job-iteration. A is the
// kind's arguments; S is the state of the walk: the cursor, plus whatever the
// walk has accumulated that the result needs. The checkpoint is S encoded (by
// default as JSON), so a state may be a plain struct of exported fields.
//
// Its Run method is the kind's Handler. Run starts from Begin, or from the
// checkpoint of an earlier attempt through Resume, then calls Step until it
// reports done and returns Finish's result. After every step it stores the
// checkpoint with the progress, fenced by the attempt's lease, and then stops
// if the attempt must end:
//
//   - its context is canceled (shutdown past its grace, a client's cancel,
//     the attempt's timeout, a lost lease): Run returns the cause, and the
//     pool requeues (shutdown), cancels or retries the job as for any handler;
//   - the attempt has run for PoolConfig.MaxRunSlice (Job.ShouldYield): the
//     job goes back to its queue without consuming an attempt.
//
// Either way the next attempt, on any worker, resumes after the last step
// whose checkpoint was stored. A step is never interrupted between its start
// and its checkpoint, so Step should bound its own duration (a batch of
// items, not the whole collection). Steps run at least once: one that
// finished but whose checkpoint was not stored (the worker was killed) runs
// again, so its effects outside the state must be idempotent.
type Iteration[A, S any] struct {
	// Begin returns the state of a walk that has not started: it runs on
	// the first attempt, and on every later one until a checkpoint exists.
	// Required.
	Begin func(ctx context.Context, job *Job, args A) (S, error)
	// Resume returns the state stored in checkpoint by an earlier attempt.
	// Optional: by default the checkpoint is decoded as JSON into a zero S,
	// and a checkpoint that does not decode fails the job permanently.
	Resume func(ctx context.Context, job *Job, args A, checkpoint []byte) (S, error)
	// Step processes the next item or batch after state and returns the
	// state past it; done reports that the collection is exhausted and next
	// is final. Given a final state it must report done at once. On error
	// the returned state is not used: the next attempt resumes from the last
	// checkpoint (wrap the error with Permanent when a retry cannot help).
	// Required.
	Step func(ctx context.Context, job *Job, args A, state S) (next S, done bool, err error)
	// Checkpoint encodes state. Optional: by default json.Marshal.
	Checkpoint func(state S) ([]byte, error)
	// Progress describes state for the status document: percent done
	// (0..100) and a short message. Optional: by default 0 and the number
	// of steps this attempt took.
	Progress func(args A, state S) (percent float64, message string)
	// Finish returns the job's result from the final state. Optional: by
	// default an empty Result.
	Finish func(ctx context.Context, job *Job, args A, state S) (Result, error)
}

// checkpointTimeout bounds the write of one checkpoint. The write outlives
// the attempt's context, so that a step completed while the attempt was
// being interrupted is not done again.
const checkpointTimeout = 10 * time.Second

// Run walks the collection for one attempt of job; it is the Handler of an
// iterative kind:
//
//	workers.Kind[Args]{Name: "reindex", Handler: reindex.Run, ...}
func (it Iteration[A, S]) Run(ctx context.Context, job *Job, args A) (Result, error) {
	if it.Begin == nil || it.Step == nil {
		return Result{}, Permanent(errors.New("iteration of kind " + job.Kind + " declares no Begin or no Step"))
	}
	state, err := it.start(ctx, job, args)
	if err != nil {
		return Result{}, err
	}
	for steps := 1; ; steps++ {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("interrupted before step %d of this attempt: %w", steps, context.Cause(ctx))
		}
		next, done, err := it.Step(ctx, job, args, state)
		if err != nil {
			return Result{}, err
		}
		state = next
		// The last step is checkpointed too: should Finish fail, a retry
		// needs no step again.
		if err := it.save(ctx, job, args, state, steps); err != nil {
			return Result{}, err
		}
		if done {
			if it.Finish == nil {
				return Result{}, nil
			}
			return it.Finish(ctx, job, args, state)
		}
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("interrupted after step %d of this attempt, at its checkpoint: %w",
				steps, context.Cause(ctx))
		}
		if job.ShouldYield() {
			return Result{}, fmt.Errorf("%w after step %d of this attempt: the job continues from its checkpoint",
				errSliceOver, steps)
		}
	}
}

// start returns the state to walk from: Begin's, or the checkpoint's.
func (it Iteration[A, S]) start(ctx context.Context, job *Job, args A) (S, error) {
	if job.Checkpoint == nil {
		return it.Begin(ctx, job, args)
	}
	if it.Resume != nil {
		return it.Resume(ctx, job, args, job.Checkpoint)
	}
	var s S
	if err := json.Unmarshal(job.Checkpoint, &s); err != nil {
		return s, Permanent(fmt.Errorf("resume %s from its checkpoint: %w", job.Kind, err))
	}
	return s, nil
}

// save stores state as the job's checkpoint, with its progress.
func (it Iteration[A, S]) save(ctx context.Context, job *Job, args A, state S, steps int) error {
	var ckpt []byte
	var err error
	if it.Checkpoint != nil {
		ckpt, err = it.Checkpoint(state)
	} else {
		ckpt, err = json.Marshal(state)
	}
	if err == nil && len(ckpt) == 0 {
		err = errors.New("empty checkpoint")
	}
	if err != nil {
		return Permanent(fmt.Errorf("encode the checkpoint of %s after step %d: %w", job.Kind, steps, err))
	}
	pct, msg := 0.0, fmt.Sprintf("%d steps", steps)
	if it.Progress != nil {
		pct, msg = it.Progress(args, state)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkpointTimeout)
	defer cancel()
	if err := job.SaveCheckpoint(wctx, ckpt, pct, msg); err != nil {
		return fmt.Errorf("save the checkpoint after step %d: %w", steps, err)
	}
	return nil
}
