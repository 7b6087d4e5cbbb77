package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/api"
)

// Announce records that worker w is alive; it is forgotten ttl after its last
// announcement.
func (q *Queue) Announce(ctx context.Context, w api.Worker, ttl time.Duration) error {
	now := q.opts.Clock()
	w.LastSeen = now.UTC()
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, WorkerKey(w.ID), b, ttl)
		p.ZAdd(ctx, WorkersKey(), redis.Z{Score: float64(now.UnixMilli()), Member: w.ID})
		p.ZRemRangeByScore(ctx, WorkersKey(), "-inf", strconv.FormatInt(now.Add(-ttl).UnixMilli(), 10))
		return nil
	})
	if err != nil {
		return fmt.Errorf("announce worker %s: %w", w.ID, err)
	}
	return nil
}

// Retire forgets worker id at once (clean shutdown).
func (q *Queue) Retire(ctx context.Context, id string) error {
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, WorkerKey(id))
		p.ZRem(ctx, WorkersKey(), id)
		return nil
	})
	return err
}

// Workers lists the live worker processes, most recently seen first.
func (q *Queue) Workers(ctx context.Context) ([]api.Worker, error) {
	ids, err := q.rdb.ZRevRange(ctx, WorkersKey(), 0, 999).Result()
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	out := make([]api.Worker, 0, len(ids))
	for _, id := range ids {
		// One key per worker: each may live on another cluster node.
		b, err := q.rdb.Get(ctx, WorkerKey(id)).Bytes()
		if err == redis.Nil {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read worker %s: %w", id, err)
		}
		var w api.Worker
		if json.Unmarshal(b, &w) == nil {
			out = append(out, w)
		}
	}
	return out, nil
}

// Throughput returns, oldest first, how many jobs of queue name succeeded
// and failed in each of the last n minutes.
func (q *Queue) Throughput(ctx context.Context, name string, n int) ([]api.Throughput, error) {
	now := minute(q.opts.Clock())
	cmds := make([]*redis.MapStringStringCmd, n)
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			cmds[i] = p.HGetAll(ctx, ThroughputKey(name, now-int64(n-1-i)*60))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("throughput %s: %w", name, err)
	}
	out := make([]api.Throughput, n)
	for i, c := range cmds {
		h := c.Val()
		s, _ := strconv.Atoi(h["succeeded"])
		f, _ := strconv.Atoi(h["failed"])
		out[i] = api.Throughput{At: time.Unix(now-int64(n-1-i)*60, 0).UTC(), Succeeded: s, Failed: f}
	}
	return out, nil
}
