package statusstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
)

// Filter selects jobs for List. Zero fields match everything.
type Filter struct {
	State  string
	Queue  string
	Kind   string
	Cursor string
	// Limit is the page size, 1..200 (default 50).
	Limit int
}

// ErrBadCursor is returned for a cursor List did not produce.
var ErrBadCursor = errors.New("malformed cursor")

// ErrBadState is returned for a state filter that is not one of api.States.
var ErrBadState = errors.New("unknown state; want one of " + strings.Join(api.States, ", "))

// maxExamined bounds the records one page reads when a kind filter skips
// many: the page may then hold fewer than Limit jobs, with a next cursor.
const maxExamined = 2000

type entry struct {
	score int64
	id    string
	queue string
}

// before reports whether a sorts before b in the list (newest first).
func (a entry) before(b entry) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.id > b.id
}

// List returns one page of jobs, newest first. Pages follow one another with
// NextCursor; a page may hold fewer than Limit jobs when a kind filter skipped
// many, so clients follow the cursor until it is empty.
func (s *Store) List(ctx context.Context, f Filter) (api.JobList, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	if f.Limit > 200 {
		f.Limit = 200
	}
	if f.State != "" && !slices.Contains(api.States, f.State) {
		return api.JobList{}, fmt.Errorf("state %q: %w", f.State, ErrBadState)
	}
	after, err := decodeCursor(f.Cursor)
	if err != nil {
		return api.JobList{}, err
	}
	queues := []string{f.Queue}
	if f.Queue == "" {
		if queues, err = s.rdb.SMembers(ctx, queue.QueuesKey()).Result(); err != nil {
			return api.JobList{}, fmt.Errorf("list queues: %w", err)
		}
	}
	batch := f.Limit + 1
	if f.Kind != "" {
		batch = min(maxExamined, f.Limit*8)
	}
	// Candidates: the next batch of each queue's index after the cursor,
	// merged newest first.
	var cands []entry
	full := false
	// Every job is in exactly one state set of its queue: with no state
	// filter, the sets of all states are merged.
	states := api.States
	if f.State != "" {
		states = []string{f.State}
	}
	for _, q := range queues {
		es, more, err := s.pages(ctx, q, states, after, batch)
		if err != nil {
			return api.JobList{}, err
		}
		full = full || more
		cands = append(cands, es...)
	}
	// The state sets of one queue are read in one transaction (pages), so
	// a job is among the candidates once.
	sort.Slice(cands, func(i, j int) bool { return cands[i].before(cands[j]) })
	if len(cands) > batch {
		cands, full = cands[:batch], true
	}
	out := api.JobList{Jobs: []api.Job{}}
	var last entry
	for start := 0; start < len(cands) && len(out.Jobs) < f.Limit; start += 100 {
		chunk := cands[start:min(start+100, len(cands))]
		recs := make([]*redis.SliceCmd, len(chunk))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, e := range chunk {
				recs[i] = p.HMGet(ctx, queue.JobKey(e.queue, e.id), docFields...)
			}
			return nil
		}); err != nil {
			return api.JobList{}, fmt.Errorf("read jobs: %w", err)
		}
		for i, e := range chunk {
			last = e
			h := fieldMap(recs[i].Val())
			if h["state"] == "" || (f.Kind != "" && h["kind"] != f.Kind) {
				continue
			}
			out.Jobs = append(out.Jobs, decode(e.id, e.queue, h))
			if len(out.Jobs) == f.Limit {
				break
			}
		}
	}
	if last.id != "" && (full || last != cands[len(cands)-1]) {
		out.NextCursor = encodeCursor(last)
	}
	return out, nil
}

// pages reads, for each of the given state sets of queue q, up to n entries
// that sort after the cursor, and whether more may follow. The sets are read
// in one MULTI/EXEC (all keys of a queue share a hash slot): a snapshot in
// which a job changing state is in exactly one of them, never in none.
func (s *Store) pages(ctx context.Context, q string, states []string, after *entry, n int) ([]entry, bool, error) {
	max := "+inf"
	if after != nil {
		max = strconv.FormatInt(after.score, 10)
	}
	cmds := make([]*redis.ZSliceCmd, len(states))
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, st := range states {
			// Entries with the cursor's own score that sort at or before it
			// are skipped, so ask for enough to cover them.
			cmds[i] = p.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
				Key: queue.StateKey(q, st), Start: max, Stop: "-inf", ByScore: true, Rev: true, Count: int64(n) + 64,
			})
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("page the state sets of %s: %w", q, err)
	}
	var out []entry
	more := false
	for _, c := range cmds {
		es, m := pageOf(c.Val(), q, after, n)
		out, more = append(out, es...), more || m
	}
	return out, more, nil
}

// pageOf keeps, of the entries zs of one index (newest first, asked for
// n+64), the first n that sort after the cursor, and tells whether more
// may follow.
func pageOf(zs []redis.Z, q string, after *entry, n int) ([]entry, bool) {
	more := len(zs) == n+64
	out := make([]entry, 0, min(len(zs), n))
	for _, z := range zs {
		e := entry{score: int64(z.Score), id: z.Member.(string), queue: q}
		if after != nil && !after.before(e) {
			continue
		}
		if len(out) == n {
			return out, true
		}
		out = append(out, e)
	}
	return out, more
}

func encodeCursor(e entry) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(e.score, 10) + "|" + e.id))
}

func decodeCursor(c string) (*entry, error) {
	if c == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, ErrBadCursor
	}
	sc, id, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(sc, 10, 64)
	if !ok || err != nil {
		return nil, ErrBadCursor
	}
	q, ok := queue.QueueOf(id)
	if !ok {
		return nil, ErrBadCursor
	}
	return &entry{score: n, id: id, queue: q}, nil
}
