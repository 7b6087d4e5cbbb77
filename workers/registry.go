// Package workers owns running jobs: the registry of job kinds with typed,
// versioned arguments (upgraded in the worker from any version a kind ever
// published) and a JSON Schema each, the worker pool that leases jobs from
// package queue and runs their handlers under a heartbeat, iteration with
// checkpoints for kinds that walk a collection (Iteration), and the built-in
// kinds (sleep, thumbnail, report). It does not speak HTTP: the API
// reaches the registry through the small interface handlers declares.
package workers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/offload-dev/offload/api"
)

// Job is what a handler knows about the attempt it runs, and its way to report
// progress.
type Job struct {
	ID          string
	Queue       string
	Kind        string
	Attempt     int
	MaxAttempts int
	// ArgsVersion is the version of the arguments as the job was enqueued,
	// before the worker upgraded them to the kind's current Version.
	ArgsVersion int
	// Checkpoint is the last checkpoint stored by an earlier attempt (nil if
	// none): an iterative handler resumes from it.
	Checkpoint []byte

	report func(ctx context.Context, percent float64, message string, checkpoint []byte) error
	// yield reports whether the attempt has used its run slice; nil: never.
	yield func() bool
}

// ShouldYield reports whether this attempt has run for the pool's
// MaxRunSlice. Iteration.Run checks it after each checkpoint and then hands
// the job back to its queue, without consuming an attempt, to continue from
// that checkpoint; other handlers may ignore it.
func (j *Job) ShouldYield() bool { return j.yield != nil && j.yield() }

// Progress stores how far the job got, for the status document. It returns
// an error wrapping queue.ErrLeaseLost when this attempt no longer owns the
// job: the handler should stop.
func (j *Job) Progress(ctx context.Context, percent float64, message string) error {
	if j.report == nil {
		return nil
	}
	return j.report(ctx, percent, message, nil)
}

// SaveCheckpoint stores a checkpoint (any JSON) together with progress. A
// later attempt of the same job receives it in Job.Checkpoint. While Redis
// is unavailable (queue.Unavailable) it tries again, for up to 10s (or
// until ctx is done, if sooner), so that a short outage does not cost the
// work since the last checkpoint.
func (j *Job) SaveCheckpoint(ctx context.Context, checkpoint []byte, percent float64, message string) error {
	if j.report == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	return persist(ctx, func(ctx context.Context) error {
		return j.report(ctx, percent, message, checkpoint)
	})
}

// Result is what a successful handler produced.
type Result struct {
	// Value is stored, JSON-encoded, as the job's result; nil for none.
	Value any
	// Target is the resource the job created; nil for none. Only kinds that
	// declare a Target collection may return one.
	Target *Target
	// FollowUps are jobs to enqueue once this one succeeds. They are staged
	// atomically with the success: never lost, and never enqueued for an
	// attempt that did not complete. Their args are checked against their
	// kind's schema first; a follow-up that fails it fails this attempt.
	FollowUps []FollowUp
}

// FollowUp is a job a handler enqueues. Its kind must be registered in the
// worker's registry.
type FollowUp struct {
	Kind string
	// Args are encoded as JSON.
	Args any
	// Queue, Priority, MaxAttempts and OrderingKey default as for a request.
	Queue       string
	Priority    int
	MaxAttempts int
	OrderingKey string
}

// Target is the representation of a resource a job created. It is served at
// /v1/{collection}/{job id}.
type Target struct {
	ContentType string
	Body        []byte
}

// Kind declares a job kind whose arguments decode into A.
type Kind[A any] struct {
	// Name is what clients put in "kind".
	Name string
	// Version is the current version of the arguments (default 1). The API
	// validates arguments against Schema, the schema of this version, and
	// stores it with the job.
	Version int
	// Upgrades turns the arguments of every older version into the next one:
	// Upgrades[v] takes version-v arguments (JSON) to version v+1. Register
	// requires one for each of 1..Version-1, so that a job enqueued by an
	// older release still runs: before the handler sees its arguments, the
	// worker applies the chain from the job's version to Version, and checks
	// the outcome against Schema. An upgrade's error fails the job
	// permanently, as does a job of a version newer than Version (enqueued by
	// a newer release). Upgrades must be pure functions of their input.
	Upgrades map[int]func(args json.RawMessage) (json.RawMessage, error)
	// Schema is the JSON Schema (OpenAPI 3 dialect) of the arguments;
	// required ("{}" takes any JSON). The API answers 422 naming the field
	// for arguments that fail it, before the job is enqueued.
	Schema string
	// Queue is where jobs of this kind go unless the request names one
	// (default "default").
	Queue string
	// MaxAttempts bounds attempts unless the request overrides it (default 3).
	MaxAttempts int
	// Timeout bounds one attempt unless the request overrides it (default 5m).
	Timeout time.Duration
	// Target names the collection of the resource the kind creates, one of
	// api.TargetCollections: "images" serves the body with its own
	// Content-Type, "reports" is meant for JSON. Empty when it creates none.
	// The job's status then answers 303 to /v1/{Target}/{job id}.
	Target string
	// Handler runs one attempt. Return Permanent(err) for failures that a retry
	// cannot fix.
	Handler func(ctx context.Context, job *Job, args A) (Result, error)
}

// entry is a registered kind with its type erased.
type entry struct {
	info   api.KindInfo
	schema *openapi3.Schema
	// decode decodes current-version arguments into the kind's type, as its
	// handler will receive them, and throws them away.
	decode func(args []byte) error
	run    func(ctx context.Context, job *Job, args []byte) (Result, error)
}

// Registry holds job kinds. It is safe for concurrent use.
type Registry struct {
	mu    sync.RWMutex
	kinds map[string]*entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{kinds: map[string]*entry{}} }

// Register adds kind k to r. It fails for a duplicate name, a missing handler
// or schema, an invalid schema, a Target the API does not serve, or
// Upgrades that do not form a chain from version 1 to Version.
func Register[A any](r *Registry, k Kind[A]) error {
	if k.Name == "" || k.Handler == nil {
		return errors.New("workers: a kind needs a Name and a Handler")
	}
	if strings.TrimSpace(k.Schema) == "" {
		return fmt.Errorf(`workers: kind %s: a Schema is required (the JSON Schema of its arguments; "{}" takes any JSON)`, k.Name)
	}
	if k.Target != "" && !slices.Contains(api.TargetCollections, k.Target) {
		return fmt.Errorf("workers: kind %s: Target %q is not a collection the API serves (%s)",
			k.Name, k.Target, strings.Join(api.TargetCollections, ", "))
	}
	var schema openapi3.Schema
	if err := json.Unmarshal([]byte(k.Schema), &schema); err != nil {
		return fmt.Errorf("workers: kind %s: schema: %w", k.Name, err)
	}
	if err := schema.Validate(context.Background()); err != nil {
		return fmt.Errorf("workers: kind %s: schema: %w", k.Name, err)
	}
	if k.Version <= 0 {
		k.Version = 1
	}
	if err := checkUpgrades(k.Version, k.Upgrades); err != nil {
		return fmt.Errorf("workers: kind %s: %w", k.Name, err)
	}
	ups := upgrades{kind: k.Name, current: k.Version, steps: maps.Clone(k.Upgrades), schema: &schema}
	if k.Queue == "" {
		k.Queue = "default"
	}
	if k.MaxAttempts <= 0 {
		k.MaxAttempts = 3
	}
	if k.Timeout <= 0 {
		k.Timeout = 5 * time.Minute
	}
	e := &entry{
		info: api.KindInfo{Name: k.Name, Version: k.Version, Queue: k.Queue,
			MaxAttempts: k.MaxAttempts, Timeout: k.Timeout, Target: k.Target},
		schema: &schema,
		decode: func(raw []byte) error {
			var a A
			return json.Unmarshal(raw, &a)
		},
		run: func(ctx context.Context, job *Job, raw []byte) (Result, error) {
			raw, err := ups.apply(job.ArgsVersion, raw)
			if err != nil {
				return Result{}, err
			}
			var a A
			if err := json.Unmarshal(raw, &a); err != nil {
				return Result{}, Permanent(fmt.Errorf("decode %s args: %w", k.Name, err))
			}
			return k.Handler(ctx, job, a)
		},
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.kinds[k.Name]; dup {
		return fmt.Errorf("workers: kind %s registered twice", k.Name)
	}
	r.kinds[k.Name] = e
	return nil
}

// MustRegister is Register that panics on error, for init-time wiring.
func MustRegister[A any](r *Registry, k Kind[A]) {
	if err := Register(r, k); err != nil {
		panic(err)
	}
}

// Lookup returns what the API needs to know about kind name.
func (r *Registry) Lookup(name string) (api.KindInfo, bool) {
	e := r.get(name)
	if e == nil {
		return api.KindInfo{}, false
	}
	return e.info, true
}

// Names returns the registered kind names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Validate checks args against kind name's schema and returns one field
// error per problem, with fields as JSON Pointers under "/args".
func (r *Registry) Validate(name string, args json.RawMessage) []api.FieldError {
	e := r.get(name)
	if e == nil {
		return []api.FieldError{{Field: "/kind", Message: fmt.Sprintf("unknown kind %q", name)}}
	}
	var v any
	if len(args) == 0 {
		args = json.RawMessage("null")
	}
	if err := json.Unmarshal(args, &v); err != nil {
		return []api.FieldError{{Field: "/args", Message: err.Error()}}
	}
	return r.check(e, v)
}

// ValidateValue is Validate for arguments already decoded into a generic
// JSON value (maps, slices, strings, float64 or json.Number, bools, nil), as
// the API's request validator leaves them.
func (r *Registry) ValidateValue(name string, v any) []api.FieldError {
	e := r.get(name)
	if e == nil {
		return []api.FieldError{{Field: "/kind", Message: fmt.Sprintf("unknown kind %q", name)}}
	}
	return r.check(e, v)
}

// DecodeArgs checks that arguments which passed kind name's schema also
// decode into the kind's Go type, as its handler will receive them, and
// returns the arguments to store. A schema can let through what the type
// refuses; such arguments answer a field error here instead of failing the
// job at its first attempt. Numbers that JSON Schema counts as integers but
// that are written with a fraction or an exponent (9.0, 1e3) are rewritten
// as integer literals (api.DecodeIntegral), so that they decode into Go
// integer fields.
func (r *Registry) DecodeArgs(name string, args json.RawMessage) (json.RawMessage, []api.FieldError) {
	e := r.get(name)
	if e == nil {
		return args, []api.FieldError{{Field: "/kind", Message: fmt.Sprintf("unknown kind %q", name)}}
	}
	stored, err := api.DecodeIntegral(args, e.decode)
	if err != nil {
		return args, []api.FieldError{api.DecodeProblem(err, "/args")}
	}
	return stored, nil
}

// base64Format checks "format": "byte" strings as encoding/json decodes them
// into []byte (standard alphabet, padded), which kin-openapi's own check
// (any base64 or base64url characters) does not: an argument that passes the
// schema must decode for the handler.
var base64Format = openapi3.NewCallbackValidator(func(s string) error {
	if _, err := io.Copy(io.Discard, base64.NewDecoder(base64.StdEncoding, strings.NewReader(s))); err != nil {
		return errors.New("is not standard base64 (RFC 4648 §4, padded)")
	}
	return nil
})

func (r *Registry) check(e *entry, v any) []api.FieldError {
	if err := e.schema.VisitJSON(v, openapi3.MultiErrors(), openapi3.WithStringFormatValidator("byte", base64Format)); err != nil {
		return api.FieldErrors(err, "/args")
	}
	return nil
}

func (r *Registry) get(name string) *entry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.kinds[name]
}
