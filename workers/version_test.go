package workers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
)

// Arguments of the "greet" test kind: version 1 had one name, version 2
// splits it.
type greetV2 struct {
	First string `json:"first"`
	Last  string `json:"last"`
}

const greetV2Schema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["first", "last"],
  "properties": {"first": {"type": "string"}, "last": {"type": "string"}}
}`

// greetV1to2 upgrades {"name":"Ada Lovelace"} to {"first":"Ada","last":"Lovelace"}.
func greetV1to2(raw json.RawMessage) (json.RawMessage, error) {
	var v1 struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &v1); err != nil {
		return nil, err
	}
	first, last, ok := strings.Cut(v1.Name, " ")
	if !ok {
		return nil, errors.New("name has no space")
	}
	return json.Marshal(greetV2{First: first, Last: last})
}

type upgradeFunc = func(json.RawMessage) (json.RawMessage, error)

func loadSchema(t *testing.T, text string) *openapi3.Schema {
	t.Helper()
	var s openapi3.Schema
	if err := json.Unmarshal([]byte(text), &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestRegisterChecksUpgrades(t *testing.T) {
	t.Parallel()
	up := func(raw json.RawMessage) (json.RawMessage, error) { return raw, nil }
	tests := []struct {
		name     string
		version  int
		upgrades map[int]upgradeFunc
		wantErr  string // "" for success
	}{
		{name: "version 1 needs none", version: 1},
		{name: "default version needs none", version: 0},
		{name: "version 2 with its upgrade", version: 2, upgrades: map[int]upgradeFunc{1: up}},
		{name: "version 3 with both upgrades", version: 3, upgrades: map[int]upgradeFunc{1: up, 2: up}},
		{name: "version 2 without upgrades", version: 2, wantErr: "Upgrades lacks [1]"},
		{name: "version 4 missing the middle", version: 4, upgrades: map[int]upgradeFunc{1: up, 3: up},
			wantErr: "Upgrades lacks [2]"},
		{name: "nil upgrade counts as missing", version: 2, upgrades: map[int]upgradeFunc{1: nil},
			wantErr: "Upgrades lacks [1]"},
		{name: "upgrade beyond the current version", version: 2, upgrades: map[int]upgradeFunc{1: up, 2: up},
			wantErr: "Upgrades[2] upgrades to version 3, but the current version is 2"},
		{name: "upgrade from version 0", version: 1, upgrades: map[int]upgradeFunc{0: up},
			wantErr: "Upgrades[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Register(NewRegistry(), Kind[greetV2]{Name: "greet", Version: tc.version, Schema: greetV2Schema,
				Upgrades: tc.upgrades, Handler: func(context.Context, *Job, greetV2) (Result, error) { return Result{}, nil }})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Register: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Register: error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestUpgradeChain(t *testing.T) {
	t.Parallel()
	const schema = `{"type": "object", "required": ["v"], "properties": {"v": {"type": "integer", "minimum": 3}}}`
	s := loadSchema(t, schema)
	// Each upgrade appends its version to a trail, so that the order is seen.
	step := func(v int) upgradeFunc {
		return func(raw json.RawMessage) (json.RawMessage, error) {
			var a struct {
				V     int   `json:"v"`
				Trail []int `json:"trail"`
			}
			if err := json.Unmarshal(raw, &a); err != nil {
				return nil, err
			}
			if a.V != v {
				return nil, errors.New("wrong input version")
			}
			a.V, a.Trail = v+1, append(a.Trail, v)
			return json.Marshal(a)
		}
	}
	chain := upgrades{kind: "k", current: 3, steps: map[int]upgradeFunc{1: step(1), 2: step(2)}, schema: s}
	tests := []struct {
		name    string
		u       upgrades
		from    int
		in      string
		want    string // the upgraded JSON, when no error is wanted
		wantErr []string
	}{
		{name: "current version passes through untouched", u: chain, from: 3, in: `{"v": 3, "x": 1}`,
			want: `{"v": 3, "x": 1}`},
		{name: "one step", u: chain, from: 2, in: `{"v":2}`, want: `{"v":3,"trail":[2]}`},
		{name: "two steps in order", u: chain, from: 1, in: `{"v":1}`, want: `{"v":3,"trail":[1,2]}`},
		{name: "newer than the worker", u: chain, from: 4, in: `{"v":4}`,
			wantErr: []string{"version 4", "version 3", "newer release"}},
		{name: "no version", u: chain, from: 0, in: `{"v":1}`, wantErr: []string{"no valid version"}},
		{name: "upgrade fails", u: chain, from: 1, in: `{"v":2}`,
			wantErr: []string{"from version 1 to 2", "wrong input version"}},
		{name: "upgrade panics", from: 1, in: `{}`,
			u: upgrades{kind: "k", current: 2, schema: s, steps: map[int]upgradeFunc{
				1: func(json.RawMessage) (json.RawMessage, error) { panic("boom") }}},
			wantErr: []string{"from version 1 to 2", "panic: boom"}},
		{name: "missing upgrade", from: 1, in: `{}`, u: upgrades{kind: "k", current: 2, schema: s},
			wantErr: []string{"no upgrade of arguments from version 1 to 2"}},
		{name: "upgrade output fails the schema", from: 1, in: `{"v":1}`,
			u:       upgrades{kind: "k", current: 2, schema: s, steps: map[int]upgradeFunc{1: step(1)}},
			wantErr: []string{"fail the version 2 schema"}},
		{name: "upgrade output is not JSON", from: 1, in: `{}`,
			u: upgrades{kind: "k", current: 2, schema: s, steps: map[int]upgradeFunc{
				1: func(json.RawMessage) (json.RawMessage, error) { return json.RawMessage("{"), nil }}},
			wantErr: []string{"not JSON"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.u.apply(tc.from, []byte(tc.in))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				if string(got) != tc.want {
					t.Fatalf("apply = %s, want %s", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("apply = %s, want an error", got)
			}
			if !IsPermanent(err) {
				t.Errorf("error %v is not permanent", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestUpgradeDoesNotAlterInput: an upgrade that scribbles on its input does
// not change the delivery's bytes (a later attempt upgrades them again).
func TestUpgradeDoesNotAlterInput(t *testing.T) {
	t.Parallel()
	s := loadSchema(t, `{"type": "object"}`)
	u := upgrades{kind: "k", current: 2, schema: s, steps: map[int]upgradeFunc{
		1: func(raw json.RawMessage) (json.RawMessage, error) {
			copy(raw, "{   }")
			return json.RawMessage(`{"b":2}`), nil
		}}}
	in := []byte(`{"a":1}`)
	if _, err := u.apply(1, in); err != nil {
		t.Fatal(err)
	}
	if string(in) != `{"a":1}` {
		t.Fatalf("input altered to %s", in)
	}
}

// TestKindRunsUpgradedArgs: a registered kind's handler sees arguments of
// the current version, and the version they were stored with.
func TestKindRunsUpgradedArgs(t *testing.T) {
	t.Parallel()
	var got greetV2
	var gotVersion int
	r := newGreetRegistry(t, func(_ context.Context, job *Job, a greetV2) (Result, error) {
		got, gotVersion = a, job.ArgsVersion
		return Result{}, nil
	})
	e := r.get("greet")
	for _, tc := range []struct {
		version int
		args    string
	}{{1, `{"name":"Ada Lovelace"}`}, {2, `{"first":"Ada","last":"Lovelace"}`}} {
		got, gotVersion = greetV2{}, 0
		if _, err := e.run(context.Background(), &Job{Kind: "greet", ArgsVersion: tc.version}, []byte(tc.args)); err != nil {
			t.Fatalf("version %d: %v", tc.version, err)
		}
		if want := (greetV2{First: "Ada", Last: "Lovelace"}); got != want || gotVersion != tc.version {
			t.Errorf("version %d: handler got %+v (ArgsVersion %d), want %+v (ArgsVersion %d)",
				tc.version, got, gotVersion, want, tc.version)
		}
	}
	_, err := e.run(context.Background(), &Job{Kind: "greet", ArgsVersion: 3}, []byte(`{}`))
	if !IsPermanent(err) || !strings.Contains(err.Error(), "version 3") {
		t.Errorf("version 3 args on a version 2 kind: %v, want a permanent error naming version 3", err)
	}
}

func newGreetRegistry(t *testing.T, h func(context.Context, *Job, greetV2) (Result, error)) *Registry {
	t.Helper()
	r := NewRegistry()
	if err := Register(r, Kind[greetV2]{Name: "greet", Version: 2, Schema: greetV2Schema, MaxAttempts: 3,
		Upgrades: map[int]upgradeFunc{1: greetV1to2}, Handler: h}); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPoolUpgradesStoredArgs writes jobs straight into a real Redis, as an
// older (or newer) release would have, and runs them with a pool whose kind
// is at version 2.
func TestPoolUpgradesStoredArgs(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	q := queue.New(rdb, queue.Options{Lease: 5 * time.Second})
	received := make(chan greetV2, 10)
	reg := newGreetRegistry(t, func(_ context.Context, job *Job, a greetV2) (Result, error) {
		received <- a
		return Result{Value: map[string]any{"hello": a.First + " " + a.Last, "from_version": job.ArgsVersion}}, nil
	})
	done := subscribeDone(t, rdb)
	runPool(t, q, reg, PoolConfig{Concurrency: 2, Queues: []QueueWeight{{Name: "greet"}}})
	store := statusstore.New(rdb)

	t.Run("v1 job on a v2 kind", func(t *testing.T) {
		e, err := q.Enqueue(ctx, queue.NewJob{Queue: "greet", Kind: "greet", Version: 1, MaxAttempts: 3,
			Args: []byte(`{"name":"Ada Lovelace"}`)})
		if err != nil {
			t.Fatal(err)
		}
		done.wait(t, e.ID)
		job, err := store.Get(ctx, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if job.State != api.StateSucceeded || job.Attempt != 1 {
			t.Fatalf("job %s, attempt %d (error %+v), want succeeded on attempt 1", job.State, job.Attempt, job.Error)
		}
		if want := `{"from_version":1,"hello":"Ada Lovelace"}`; string(job.Result) != want {
			t.Errorf("result %s, want %s", job.Result, want)
		}
		if got, want := <-received, (greetV2{First: "Ada", Last: "Lovelace"}); got != want {
			t.Errorf("handler received %+v, want %+v", got, want)
		}
	})

	t.Run("v3 job on a v2 kind", func(t *testing.T) {
		e, err := q.Enqueue(ctx, queue.NewJob{Queue: "greet", Kind: "greet", Version: 3, MaxAttempts: 3,
			Args: []byte(`{"given":"Ada","family":"Lovelace"}`)})
		if err != nil {
			t.Fatal(err)
		}
		done.wait(t, e.ID)
		job, err := store.Get(ctx, e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if job.State != api.StateFailed || job.Attempt != 1 || len(job.AttemptErrors) != 1 {
			t.Fatalf("job %s after %d attempts (%d recorded), want failed after one", job.State, job.Attempt,
				len(job.AttemptErrors))
		}
		if job.Error == nil || !strings.Contains(job.Error.Detail, "version 3") ||
			!strings.Contains(job.Error.Detail, "version 2") {
			t.Errorf("error %+v does not name versions 3 and 2", job.Error)
		}
		select {
		case a := <-received:
			t.Errorf("the handler ran with %+v", a)
		default:
		}
	})
}
