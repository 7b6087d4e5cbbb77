package queue

import (
	"context"
	"fmt"
)

// This file exposes Fetch's two steps to the external test package, so that
// the conformance suite can put a cancel (or a worker crash) between them:
// the race the split of Fetch into leaseScript and startScript must survive.

// LeaseOnly runs only the first step of Fetch: it leases up to n jobs of
// queue name without marking them running, and returns id, token pairs.
func (q *Queue) LeaseOnly(ctx context.Context, name string, n int) ([]string, error) {
	raw, err := leaseScript.Run(ctx, q.rdb,
		[]string{ReadyKey(name), LeasedKey(name), TokensKey(name), SeqKey(name), MetaKey(name)},
		q.opts.Clock().UnixMilli(), q.opts.Lease.Milliseconds(), n).Slice()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(raw))
	for i, v := range raw {
		out[i] = fmt.Sprint(v)
	}
	return out, nil
}

// StartLeased runs only the second step of Fetch for the id, token pairs
// LeaseOnly returned, and reports how many jobs it started.
func (q *Queue) StartLeased(ctx context.Context, name string, pairs []string) (int, error) {
	keys := append(stateKeys(name), TokensKey(name), LeasedKey(name))
	args := []any{q.opts.Clock().UnixMilli()}
	for i := 0; i < len(pairs); i += 2 {
		keys = append(keys, JobKey(name, pairs[i]))
		args = append(args, pairs[i], pairs[i+1])
	}
	res, err := startScript.Run(ctx, q.rdb, keys, args...).Slice()
	if err != nil {
		return 0, err
	}
	started := 0
	for _, r := range res {
		if f, _ := r.([]any); len(f) > 0 && toInt(f[0]) == 1 {
			started++
		}
	}
	return started, nil
}
