package workers

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/getkin/kin-openapi/openapi3"
)

// checkUpgrades verifies that ups holds an upgrade from each of the versions
// 1..current-1 and nothing else.
func checkUpgrades(current int, ups map[int]func(json.RawMessage) (json.RawMessage, error)) error {
	var missing []int
	for v := 1; v < current; v++ {
		if ups[v] == nil {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("version %d needs an upgrade from each older version: Upgrades lacks %v", current, missing)
	}
	for v := range ups {
		if v < 1 || v >= current {
			return fmt.Errorf("Upgrades[%d] upgrades to version %d, but the current version is %d", v, v+1, current)
		}
	}
	return nil
}

// upgrades is the chain of argument upgrades of one registered kind.
type upgrades struct {
	kind    string
	current int
	steps   map[int]func(json.RawMessage) (json.RawMessage, error)
	schema  *openapi3.Schema // of the current version
}

// apply upgrades raw, arguments of version from, to the current version. Any
// failure is permanent: retrying a pure function on the same input cannot
// succeed, and a job no release of this worker understands must not loop.
func (u upgrades) apply(from int, raw []byte) (json.RawMessage, error) {
	switch {
	case from == u.current:
		return raw, nil
	case from < 1:
		return nil, Permanent(fmt.Errorf("kind %s: the job's arguments have no valid version (%d)", u.kind, from))
	case from > u.current:
		return nil, Permanent(fmt.Errorf(
			"kind %s: the job's arguments are version %d, newer than version %d, the newest this worker knows: "+
				"it was enqueued by a newer release", u.kind, from, u.current))
	}
	out := json.RawMessage(raw)
	for v := from; v < u.current; v++ {
		up := u.steps[v]
		if up == nil { // Register prevents it; kept for a registry built by hand
			return nil, Permanent(fmt.Errorf("kind %s: no upgrade of arguments from version %d to %d", u.kind, v, v+1))
		}
		next, err := callUpgrade(up, slices.Clone(out))
		if err != nil {
			return nil, Permanent(fmt.Errorf("kind %s: upgrading arguments from version %d to %d: %w", u.kind, v, v+1, err))
		}
		out = next
	}
	// A faulty upgrade must not hand the handler arguments that the API
	// would have refused.
	var doc any
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, Permanent(fmt.Errorf("kind %s: arguments upgraded from version %d to %d are not JSON: %w",
			u.kind, from, u.current, err))
	}
	if err := u.schema.VisitJSON(doc, openapi3.MultiErrors()); err != nil {
		return nil, Permanent(fmt.Errorf("kind %s: arguments upgraded from version %d to %d fail the version %d schema: %w",
			u.kind, from, u.current, u.current, err))
	}
	return out, nil
}

// callUpgrade runs one upgrade, turning a panic into an error.
func callUpgrade(up func(json.RawMessage) (json.RawMessage, error), in json.RawMessage) (out json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return up(in)
}
