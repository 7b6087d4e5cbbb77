package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/offload-dev/offload/queue"
)

// countArgs are the arguments of the test iteration: sum 1..N, Batch items
// per step.
type countArgs struct {
	N     int `json:"n"`
	Batch int `json:"batch"`
}

// countState is its checkpoint.
type countState struct {
	Next int `json:"next"` // the next item to add
	Sum  int `json:"sum"`
}

// countWalk is an Iteration over 1..N that counts its calls.
type countWalk struct {
	mu            sync.Mutex
	begins, steps int
	// inStep, when set, runs inside step number (1-based, over all attempts)
	inStep func(ctx context.Context, step int)
}

func (w *countWalk) calls() (begins, steps int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.begins, w.steps
}

func (w *countWalk) iteration() Iteration[countArgs, countState] {
	return Iteration[countArgs, countState]{
		Begin: func(_ context.Context, _ *Job, _ countArgs) (countState, error) {
			w.mu.Lock()
			w.begins++
			w.mu.Unlock()
			return countState{Next: 1}, nil
		},
		Step: func(ctx context.Context, _ *Job, a countArgs, s countState) (countState, bool, error) {
			w.mu.Lock()
			w.steps++
			n := w.steps
			w.mu.Unlock()
			if w.inStep != nil {
				w.inStep(ctx, n)
			}
			for i := 0; i < a.Batch && s.Next <= a.N; i++ {
				s.Sum += s.Next
				s.Next++
			}
			return s, s.Next > a.N, nil
		},
		Progress: func(a countArgs, s countState) (float64, string) {
			return 100 * float64(s.Next-1) / float64(a.N), fmt.Sprintf("%d of %d", s.Next-1, a.N)
		},
		Finish: func(_ context.Context, _ *Job, _ countArgs, s countState) (Result, error) {
			return Result{Value: s.Sum}, nil
		},
	}
}

// saved is one checkpoint stored through a fake Job.
type saved struct {
	ckpt    string
	percent float64
	message string
}

// fakeJob is a Job whose checkpoints are recorded and which yields once
// yieldAfter checkpoints were saved (never when 0).
type fakeJob struct {
	*Job
	mu    sync.Mutex
	saves []saved
	// fail, when set, is returned by the next save.
	fail error
}

func newFakeJob(checkpoint []byte, yieldAfter int) *fakeJob {
	f := &fakeJob{}
	f.Job = &Job{ID: "default.test", Kind: "count", Attempt: 1, MaxAttempts: 1, Checkpoint: checkpoint,
		report: func(ctx context.Context, pct float64, msg string, ckpt []byte) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if ctx.Err() != nil {
				return fmt.Errorf("checkpoint written with a done context: %w", ctx.Err())
			}
			if f.fail != nil {
				return f.fail
			}
			f.saves = append(f.saves, saved{string(ckpt), pct, msg})
			return nil
		}}
	if yieldAfter > 0 {
		f.yield = func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return len(f.saves) >= yieldAfter
		}
	}
	return f
}

func (f *fakeJob) checkpoints() []saved {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]saved(nil), f.saves...)
}

func (f *fakeJob) last() []byte {
	s := f.checkpoints()
	if len(s) == 0 {
		return nil
	}
	return []byte(s[len(s)-1].ckpt)
}

func TestIterationRunsToTheEnd(t *testing.T) {
	t.Parallel()
	var w countWalk
	job := newFakeJob(nil, 0)
	res, err := w.iteration().Run(context.Background(), job.Job, countArgs{N: 10, Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Value != 55 {
		t.Errorf("result %v, want 55", res.Value)
	}
	want := []saved{
		{`{"next":4,"sum":6}`, 30, "3 of 10"},
		{`{"next":7,"sum":21}`, 60, "6 of 10"},
		{`{"next":10,"sum":45}`, 90, "9 of 10"},
		{`{"next":11,"sum":55}`, 100, "10 of 10"},
	}
	if got := job.checkpoints(); !reflect.DeepEqual(got, want) {
		t.Errorf("checkpoints\n got %+v\nwant %+v", got, want)
	}
	if b, s := w.calls(); b != 1 || s != 4 {
		t.Errorf("%d begins and %d steps, want 1 and 4", b, s)
	}
}

// TestIterationYields: past the run slice the walk stops at its next
// checkpoint with errSliceOver, and attempts resumed from each last
// checkpoint add up to the same result as one straight run.
func TestIterationYields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		yieldAfter int
		attempts   int
	}{
		{"every step", 1, 34},
		{"every 5 steps", 5, 7},
		{"every 33 steps", 33, 2},
		{"longer than the walk", 100, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var w countWalk
			it := w.iteration()
			args := countArgs{N: 100, Batch: 3} // 34 steps
			var ckpt []byte
			var all []saved
			for attempt := 1; ; attempt++ {
				if attempt > 100 {
					t.Fatal("no end after 100 attempts")
				}
				job := newFakeJob(ckpt, tc.yieldAfter)
				res, err := it.Run(context.Background(), job.Job, args)
				saves := job.checkpoints()
				all = append(all, saves...)
				if err == nil {
					if res.Value != 5050 || attempt != tc.attempts {
						t.Fatalf("result %v after %d attempts, want 5050 after %d", res.Value, attempt, tc.attempts)
					}
					break
				}
				if !errors.Is(err, errSliceOver) {
					t.Fatalf("attempt %d: %v, want errSliceOver", attempt, err)
				}
				if len(saves) != tc.yieldAfter {
					t.Fatalf("attempt %d yielded after %d checkpoints, want %d", attempt, len(saves), tc.yieldAfter)
				}
				ckpt = job.last()
			}
			if b, s := w.calls(); b != 1 || s != 34 {
				t.Errorf("%d begins and %d steps, want 1 and 34: a step ran twice or was skipped", b, s)
			}
			for i := 1; i < len(all); i++ {
				if all[i].percent <= all[i-1].percent {
					t.Errorf("progress went from %v to %v", all[i-1].percent, all[i].percent)
				}
			}
		})
	}
}

// TestIterationResumesFromAnyCheckpoint: whichever checkpoint a walk resumes
// from, it ends with the result of a straight run.
func TestIterationResumesFromAnyCheckpoint(t *testing.T) {
	t.Parallel()
	var w countWalk
	it := w.iteration()
	args := countArgs{N: 20, Batch: 4}
	straight := newFakeJob(nil, 0)
	want, err := it.Run(context.Background(), straight.Job, args)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range straight.checkpoints() {
		job := newFakeJob([]byte(s.ckpt), 0)
		got, err := it.Run(context.Background(), job.Job, args)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("from checkpoint %d (%s): %+v, %v; want %+v", i, s.ckpt, got, err, want)
		}
		if n := len(job.checkpoints()); n != max(len(straight.checkpoints())-1-i, 1) {
			t.Errorf("from checkpoint %d: %d more checkpoints", i, n)
		}
	}
}

// TestIterationInterrupted: a canceled context stops the walk at the end of
// the step under way, after its checkpoint, with the cancellation's cause;
// the checkpoint is written although the context is done.
func TestIterationInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	w := countWalk{inStep: func(_ context.Context, step int) {
		if step == 3 {
			cancel(errShutdown)
		}
	}}
	job := newFakeJob(nil, 0)
	_, err := w.iteration().Run(ctx, job.Job, countArgs{N: 100, Batch: 10})
	if !errors.Is(err, errShutdown) {
		t.Fatalf("Run: %v, want errShutdown", err)
	}
	saves := job.checkpoints()
	if len(saves) != 3 || saves[2].ckpt != `{"next":31,"sum":465}` {
		t.Fatalf("checkpoints %+v, want 3, the last after item 30", saves)
	}
	if _, s := w.calls(); s != 3 {
		t.Errorf("%d steps ran, want 3", s)
	}

	// Canceled before it starts: no step at all.
	w = countWalk{}
	ctx, cancel2 := context.WithCancelCause(context.Background())
	cancel2(errCanceledByClient)
	job = newFakeJob([]byte(`{"next":31,"sum":465}`), 0)
	if _, err := w.iteration().Run(ctx, job.Job, countArgs{N: 100, Batch: 10}); !errors.Is(err, errCanceledByClient) {
		t.Fatalf("Run: %v, want errCanceledByClient", err)
	}
	if _, s := w.calls(); s != 0 || len(job.checkpoints()) != 0 {
		t.Errorf("%d steps and %d checkpoints after a cancel before the start", s, len(job.checkpoints()))
	}
}

func TestIterationErrors(t *testing.T) {
	t.Parallel()
	bad := errors.New("item 7 is bad")
	tests := []struct {
		name      string
		modify    func(*Iteration[countArgs, countState])
		ckpt      string
		saveErr   error
		wantIs    error
		permanent bool
		wantSaves int
		wantText  string
	}{
		{name: "step error keeps the last checkpoint", wantIs: bad, wantSaves: 2,
			modify: func(it *Iteration[countArgs, countState]) {
				step := it.Step
				it.Step = func(ctx context.Context, j *Job, a countArgs, s countState) (countState, bool, error) {
					if s.Next > 6 {
						return s, false, bad
					}
					return step(ctx, j, a, s)
				}
			}},
		{name: "lost lease stops the walk", saveErr: queue.ErrLeaseLost, wantIs: queue.ErrLeaseLost},
		{name: "checkpoint that does not decode", ckpt: `{"next":"x"}`, permanent: true,
			wantText: "resume count from its checkpoint"},
		{name: "checkpoint that does not encode", permanent: true, wantText: "encode the checkpoint",
			modify: func(it *Iteration[countArgs, countState]) {
				it.Checkpoint = func(countState) ([]byte, error) { return nil, errors.New("no") }
			}},
		{name: "empty checkpoint", permanent: true, wantText: "empty checkpoint",
			modify: func(it *Iteration[countArgs, countState]) {
				it.Checkpoint = func(countState) ([]byte, error) { return nil, nil }
			}},
		{name: "no Step", permanent: true, wantText: "no Step",
			modify: func(it *Iteration[countArgs, countState]) { it.Step = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var w countWalk
			it := w.iteration()
			if tc.modify != nil {
				tc.modify(&it)
			}
			var ckpt []byte
			if tc.ckpt != "" {
				ckpt = []byte(tc.ckpt)
			}
			job := newFakeJob(ckpt, 0)
			job.fail = tc.saveErr
			_, err := it.Run(context.Background(), job.Job, countArgs{N: 10, Batch: 3})
			if err == nil {
				t.Fatal("Run succeeded")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v, want %v", err, tc.wantIs)
			}
			if IsPermanent(err) != tc.permanent {
				t.Errorf("error %v: permanent %v, want %v", err, IsPermanent(err), tc.permanent)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
			if n := len(job.checkpoints()); n != tc.wantSaves {
				t.Errorf("%d checkpoints, want %d", n, tc.wantSaves)
			}
		})
	}
}

// TestReportIterationYields runs the report kind's iteration one step per
// attempt, each resumed from the last checkpoint in JSON, and compares the
// outcome with a straight run.
func TestReportIterationYields(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("region,amount,qty\n")
	for i := range 3*reportBatch + 17 {
		fmt.Fprintf(&b, "r%d,%d,%d.5\n", i%7, i%1000, i%3)
	}
	args := ReportArgs{CSV: b.String(), GroupBy: "region", Sum: []string{"amount", "qty"}}
	want, err := reportRun(args, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ckpt []byte
	for attempt := 1; ; attempt++ {
		job := newFakeJob(ckpt, 1)
		res, err := reportIteration.Run(context.Background(), job.Job, args)
		if err == nil {
			if attempt != 4 {
				t.Errorf("%d attempts, want 4", attempt)
			}
			var got Report
			if err := json.Unmarshal(res.Target.Body, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("report over 4 attempts\n got %+v\nwant %+v", got, want)
			}
			if s := job.checkpoints(); s[len(s)-1].percent != 100 {
				t.Errorf("last progress %+v", s[len(s)-1])
			}
			return
		}
		if !errors.Is(err, errSliceOver) || attempt > 4 {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		s := job.checkpoints()
		if want := fmt.Sprintf("%d rows", attempt*reportBatch); s[0].message != want {
			t.Errorf("attempt %d: progress %q, want %q", attempt, s[0].message, want)
		}
		ckpt = job.last()
	}
}
