package workers_test

import (
	"context"
	"encoding/json"

	"github.com/offload-dev/offload/workers"
)

// ResizeArgs are version 2 of the arguments of the example's "resize" kind:
// version 1 called the width "size".
type ResizeArgs struct {
	URL   string `json:"url"`
	Width int    `json:"width"`
}

// ExampleKind_upgrades changes a kind's arguments while jobs of the old shape
// still wait in Redis: the kind declares the new Version and an upgrade from
// each older one, and the worker applies them before the handler sees the
// arguments (a job queued by yesterday's release runs on today's).
func ExampleKind_upgrades() {
	reg := workers.NewRegistry()
	workers.MustRegister(reg, workers.Kind[ResizeArgs]{
		Name:    "resize",
		Version: 2,
		Upgrades: map[int]func(json.RawMessage) (json.RawMessage, error){
			// Version 1 to 2: "size" became "width".
			1: func(v1 json.RawMessage) (json.RawMessage, error) {
				var a map[string]any
				if err := json.Unmarshal(v1, &a); err != nil {
					return nil, err
				}
				a["width"] = a["size"]
				delete(a, "size")
				return json.Marshal(a)
			},
		},
		// The schema of the current version.
		Schema: `{"type": "object", "required": ["url", "width"], "properties": {
			"url": {"type": "string"}, "width": {"type": "integer", "minimum": 1}}}`,
		Handler: func(ctx context.Context, job *workers.Job, a ResizeArgs) (workers.Result, error) {
			return workers.Result{Value: map[string]any{"width": a.Width}}, nil
		},
	})
}
