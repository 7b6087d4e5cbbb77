package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// SleepArgs are the arguments of the sleep kind.
type SleepArgs struct {
	// MS is how long to sleep, 0..3,600,000.
	MS int64 `json:"ms"`
	// FailTimes fails the first N attempts, retryably.
	FailTimes int `json:"fail_times,omitempty"`
	// Result is echoed as the job's result.
	Result json.RawMessage `json:"result,omitempty"`
}

const sleepSchema = `{
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "ms": {"type": "integer", "minimum": 0, "maximum": 3600000},
    "fail_times": {"type": "integer", "minimum": 0, "maximum": 100},
    "result": {"nullable": true}
  }
}`

const thumbnailSchema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["image", "width", "format"],
  "properties": {
    "image": {"type": "string", "format": "byte", "minLength": 1},
    "width": {"type": "integer", "minimum": 1, "maximum": 4096},
    "height": {"type": "integer", "minimum": 1, "maximum": 4096},
    "format": {"type": "string", "enum": ["png", "jpeg"]}
  }
}`

const reportSchema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["csv", "group_by"],
  "properties": {
    "csv": {"type": "string", "minLength": 1},
    "group_by": {"type": "string", "minLength": 1},
    "sum": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 64}
  }
}`

// reportBatch is how many rows the report kind processes between checkpoints.
const reportBatch = 10000

// RegisterBuiltins registers the built-in kinds: sleep, thumbnail and report.
func RegisterBuiltins(r *Registry) error {
	if err := Register(r, Kind[SleepArgs]{
		Name: "sleep", Schema: sleepSchema, MaxAttempts: 3, Timeout: 2 * time.Hour,
		Handler: runSleep,
	}); err != nil {
		return err
	}
	if err := Register(r, Kind[ThumbnailArgs]{
		Name: "thumbnail", Schema: thumbnailSchema, MaxAttempts: 3, Timeout: time.Minute,
		Target: "images", Handler: runThumbnail,
	}); err != nil {
		return err
	}
	return Register(r, Kind[ReportArgs]{
		Name: "report", Schema: reportSchema, MaxAttempts: 3, Timeout: 30 * time.Minute,
		Target: "reports", Handler: reportIteration.Run,
	})
}

// runSleep waits, honouring cancellation and shutdown, then echoes its result.
func runSleep(ctx context.Context, job *Job, a SleepArgs) (Result, error) {
	t := time.NewTimer(time.Duration(a.MS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return Result{}, context.Cause(ctx)
	case <-t.C:
	}
	if job.Attempt <= a.FailTimes {
		return Result{}, fmt.Errorf("sleep: failing attempt %d of the first %d, as asked", job.Attempt, a.FailTimes)
	}
	if len(a.Result) == 0 {
		return Result{Value: map[string]any{"slept_ms": a.MS}}, nil
	}
	return Result{Value: a.Result}, nil
}

func runThumbnail(ctx context.Context, _ *Job, a ThumbnailArgs) (Result, error) {
	data, ctype, err := Thumbnail(ctx, a)
	if err != nil {
		return Result{}, err
	}
	return Result{Target: &Target{ContentType: ctype, Body: data}}, nil
}

// reportIteration runs the report kind: it walks the CSV reportBatch rows
// per step. Its checkpoint (a ReportState) holds the byte offset of the next
// row together with the aggregate of the rows before it, so that an
// interrupted attempt resumes where the last checkpoint left it, on any
// worker, and no row counts twice.
var reportIteration = Iteration[ReportArgs, *ReportIter]{
	Begin: func(_ context.Context, _ *Job, a ReportArgs) (*ReportIter, error) { return NewReport(a) },
	Resume: func(_ context.Context, _ *Job, a ReportArgs, ckpt []byte) (*ReportIter, error) {
		return ResumeReport(a, ckpt)
	},
	Step: func(_ context.Context, _ *Job, _ ReportArgs, it *ReportIter) (*ReportIter, bool, error) {
		done, err := it.Step(reportBatch)
		return it, done, err
	},
	Checkpoint: func(it *ReportIter) ([]byte, error) { return it.Checkpoint() },
	Progress: func(_ ReportArgs, it *ReportIter) (float64, string) {
		rows, pct := it.Progress()
		return pct, fmt.Sprintf("%d rows", rows)
	},
	Finish: func(_ context.Context, _ *Job, _ ReportArgs, it *ReportIter) (Result, error) {
		body, err := json.Marshal(it.Result())
		if err != nil {
			return Result{}, Permanent(err)
		}
		return Result{Target: &Target{ContentType: "application/json", Body: body}}, nil
	},
}
