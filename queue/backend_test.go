package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
)

// The conformance suite runs every case against three backends: miniredis, a
// real redis-server and a real 3-master Redis Cluster. miniredis's Lua is an
// interpreter written in Go; only real Redis proves a script, and only a
// cluster proves that every script names its keys and keeps them in one slot.

// Options every case's Queue runs with, so that cases can compute deadlines.
const (
	testLease     = 30 * time.Second
	testRetention = time.Hour
	testTombstone = 24 * time.Hour
	// eventTimeout bounds every wait for a pub/sub message. It is generous:
	// a test never asserts wall-clock time.
	eventTimeout = 15 * time.Second
)

// clockStart is where every case's fake clock starts: far from the real time,
// so that a script that reads the server clock instead of ARGV shows.
var clockStart = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// fakeClock is the injected clock of the queue under test. Time moves only
// when the test advances it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
	// onAdvance moves the backend's own clock (miniredis TTLs) along.
	onAdvance func(d time.Duration, now time.Time)
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	c.mu.Unlock()
	if c.onAdvance != nil {
		c.onAdvance(d, now)
	}
}

// masterFunc runs fn against every master of a backend (the one server, or
// each master of a cluster).
type masterFunc func(ctx context.Context, fn func(ctx context.Context, c *redis.Client) error) error

// env is what one case runs against: a fresh (or flushed) database, a fake
// clock and a Queue over them.
type env struct {
	t       *testing.T
	ctx     context.Context
	backend string
	rdb     redis.UniversalClient
	mr      *miniredis.Miniredis // nil on real Redis
	masters masterFunc
	clock   *fakeClock
	q       *queue.Queue

	mu     sync.Mutex
	queues map[string]bool // queues this case enqueued into, and its sentinels
}

// backend is one kind of Redis the suite runs against. setup is called once
// in the backend's subtest (servers live as long as it) and returns the
// factory of per-case environments.
type backend struct {
	name  string
	setup func(t *testing.T) func(t *testing.T) *env
}

var backends = []backend{
	{name: "miniredis", setup: func(*testing.T) func(*testing.T) *env {
		return func(t *testing.T) *env {
			mr := miniredis.RunT(t)
			rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { _ = rdb.Close() })
			e := newEnv(t, "miniredis", rdb, func(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
				return fn(ctx, rdb)
			})
			e.mr = mr
			mr.SetTime(e.clock.Now())
			e.clock.onAdvance = func(d time.Duration, now time.Time) {
				mr.SetTime(now)
				mr.FastForward(d)
			}
			return e
		}
	}},
	{name: "redis", setup: func(t *testing.T) func(*testing.T) *env {
		srv := redistest.Start(t)
		rdb := srv.Client(t)
		masters := func(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
			return fn(ctx, rdb)
		}
		return func(t *testing.T) *env {
			e := newEnv(t, "redis", rdb, masters)
			e.flush()
			return e
		}
	}},
	{name: "cluster", setup: func(t *testing.T) func(*testing.T) *env {
		cl := redistest.StartCluster(t)
		cc := cl.Client(t)
		return func(t *testing.T) *env {
			e := newEnv(t, "cluster", cc, cc.ForEachMaster)
			e.flush()
			return e
		}
	}},
}

func newEnv(t *testing.T, name string, rdb redis.UniversalClient, masters masterFunc) *env {
	t.Helper()
	clock := &fakeClock{now: clockStart}
	return &env{
		t:       t,
		ctx:     t.Context(),
		backend: name,
		rdb:     rdb,
		masters: masters,
		clock:   clock,
		queues:  map[string]bool{},
		q: queue.New(rdb, queue.Options{Lease: testLease, Retention: testRetention,
			Tombstone: testTombstone, Clock: clock.Now}),
	}
}

// flush empties every master.
func (e *env) flush() {
	e.t.Helper()
	err := e.masters(e.ctx, func(ctx context.Context, c *redis.Client) error {
		return c.FlushAll(ctx).Err()
	})
	if err != nil {
		e.t.Fatalf("FLUSHALL: %v", err)
	}
}

// nowMS is the fake clock in the unit the scripts store.
func (e *env) nowMS() int64 { return e.clock.Now().UnixMilli() }

func (e *env) enqueue(j queue.NewJob) queue.Enqueued {
	e.t.Helper()
	e.mu.Lock()
	e.queues[j.Queue] = true
	e.mu.Unlock()
	en, err := e.q.Enqueue(e.ctx, j)
	if err != nil {
		e.t.Fatalf("Enqueue(%+v): %v", j, err)
	}
	return en
}

func (e *env) fetch(name string, n int) []*queue.Delivery {
	e.t.Helper()
	ds, err := e.q.Fetch(e.ctx, name, n)
	if err != nil {
		e.t.Fatalf("Fetch(%s, %d): %v", name, n, err)
	}
	if len(ds) > n {
		e.t.Fatalf("Fetch(%s, %d) returned %d deliveries", name, n, len(ds))
	}
	return ds
}

// fetchOne fetches and expects exactly the job id.
func (e *env) fetchOne(name, id string) *queue.Delivery {
	e.t.Helper()
	ds := e.fetch(name, 1)
	if len(ds) != 1 {
		e.t.Fatalf("Fetch(%s, 1) returned %d deliveries, want job %s", name, len(ds), id)
	}
	if ds[0].ID != id {
		e.t.Fatalf("Fetch(%s, 1) returned job %s, want %s", name, ds[0].ID, id)
	}
	return ds[0]
}

func (e *env) fetchNone(name string) {
	e.t.Helper()
	if ds := e.fetch(name, 10); len(ds) != 0 {
		e.t.Fatalf("Fetch(%s) returned %d deliveries (first %s), want none", name, len(ds), ds[0].ID)
	}
}

func (e *env) complete(d *queue.Delivery, o queue.Outcome) {
	e.t.Helper()
	if err := e.q.Complete(e.ctx, d, o); err != nil {
		e.t.Fatalf("Complete(%s): %v", d.ID, err)
	}
}

func (e *env) fail(d *queue.Delivery, mode string, retryAt time.Time, cause string) string {
	e.t.Helper()
	st, err := e.q.Fail(e.ctx, d, mode, retryAt, cause, testDoc)
	if err != nil {
		e.t.Fatalf("Fail(%s, %s): %v", d.ID, mode, err)
	}
	return st
}

var testDoc = queue.ErrorDoc{Type: "https://offload.dev/problems/test", Title: "Test failure", Status: 500, Detail: "boom"}

// job returns the job record (HGETALL on its hash).
func (e *env) job(q, id string) map[string]string {
	e.t.Helper()
	rec, err := e.rdb.HGetAll(e.ctx, queue.JobKey(q, id)).Result()
	if err != nil {
		e.t.Fatalf("HGETALL %s: %v", queue.JobKey(q, id), err)
	}
	return rec
}

// recordDefaults are the values every reader gives a field the record
// leaves out (queue.Enqueue writes a field only when it differs).
var recordDefaults = map[string]string{"attempt": "0", "ver": "1", "prio": "0", "max": "1", "timeout": "0"}

// wantFields checks fields of the job record; a want of "" means absent, and
// an absent field with a default (recordDefaults) reads as the default.
func (e *env) wantFields(q, id string, want map[string]string) map[string]string {
	e.t.Helper()
	rec := e.job(q, id)
	if len(rec) == 0 {
		e.t.Fatalf("job %s: no record", id)
	}
	for _, k := range sortedKeys(want) {
		got, ok := rec[k]
		if d, has := recordDefaults[k]; has && !ok {
			got = d
		}
		if want[k] == "" {
			if ok {
				e.t.Errorf("job %s: field %s = %q, want absent", id, k, got)
			}
			continue
		}
		if got != want[k] {
			e.t.Errorf("job %s: field %s = %q, want %q", id, k, got, want[k])
		}
	}
	return rec
}

// wantState checks the record's state and that the job is in exactly the
// index set of that state (the state sets together index every job).
func (e *env) wantState(q, id, state string) {
	e.t.Helper()
	if got := e.job(q, id)["state"]; got != state {
		e.t.Errorf("job %s: state %q, want %q", id, got, state)
	}
	for _, s := range api.States {
		_, err := e.rdb.ZScore(e.ctx, queue.StateKey(q, s), id).Result()
		in := err == nil
		if err != nil && !errors.Is(err, redis.Nil) {
			e.t.Fatalf("ZSCORE %s: %v", queue.StateKey(q, s), err)
		}
		if in != (s == state) {
			e.t.Errorf("job %s (state %s): in index %s = %v", id, state, s, in)
		}
	}
}

// wantCounts checks Stats: states not named must count 0.
func (e *env) wantCounts(q string, want map[string]int) queue.Stats {
	e.t.Helper()
	st, err := e.q.Stats(e.ctx, q)
	if err != nil {
		e.t.Fatalf("Stats(%s): %v", q, err)
	}
	if st.Name != q {
		e.t.Errorf("Stats(%s).Name = %q", q, st.Name)
	}
	for _, s := range api.States {
		if st.Counts[s] != want[s] {
			e.t.Errorf("Stats(%s).Counts[%s] = %d, want %d (all: %v)", q, s, st.Counts[s], want[s], st.Counts)
		}
	}
	return st
}

// score returns the member's score in a sorted set, and whether it is there.
func (e *env) score(key, member string) (float64, bool) {
	e.t.Helper()
	s, err := e.rdb.ZScore(e.ctx, key, member).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false
	}
	if err != nil {
		e.t.Fatalf("ZSCORE %s %s: %v", key, member, err)
	}
	return s, true
}

func (e *env) inZSet(key, member string) bool {
	e.t.Helper()
	_, ok := e.score(key, member)
	return ok
}

// wantScore checks a member's score in a sorted set.
func (e *env) wantScore(key, member string, want int64) {
	e.t.Helper()
	s, ok := e.score(key, member)
	if !ok {
		e.t.Errorf("%s: %s absent, want score %d", key, member, want)
		return
	}
	if int64(s) != want {
		e.t.Errorf("%s: %s score %d, want %d", key, member, int64(s), want)
	}
}

func (e *env) wantNotIn(key, member string) {
	e.t.Helper()
	if s, ok := e.score(key, member); ok {
		e.t.Errorf("%s: %s present with score %v, want absent", key, member, s)
	}
}

func (e *env) zcard(key string) int64 {
	e.t.Helper()
	n, err := e.rdb.ZCard(e.ctx, key).Result()
	if err != nil {
		e.t.Fatalf("ZCARD %s: %v", key, err)
	}
	return n
}

func (e *env) exists(key string) bool {
	e.t.Helper()
	n, err := e.rdb.Exists(e.ctx, key).Result()
	if err != nil {
		e.t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

// attemptErrors decodes the job's attempt history.
func (e *env) attemptErrors(q, id string) []queue.AttemptError {
	e.t.Helper()
	raw, err := e.rdb.LRange(e.ctx, queue.ErrorsKey(q, id), 0, -1).Result()
	if err != nil {
		e.t.Fatalf("LRANGE %s: %v", queue.ErrorsKey(q, id), err)
	}
	out := make([]queue.AttemptError, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal([]byte(r), &out[i]); err != nil {
			e.t.Fatalf("errors entry %d of %s is not JSON: %v: %q", i, id, err, r)
		}
	}
	return out
}

// errorDoc decodes the job's error field.
func (e *env) errorDoc(q, id string) queue.ErrorDoc {
	e.t.Helper()
	raw := e.job(q, id)["error"]
	var doc queue.ErrorDoc
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		e.t.Fatalf("job %s: error field is not JSON: %v: %q", id, err, raw)
	}
	return doc
}

// keys returns every offload key on every master, sorted.
func (e *env) keys() []string {
	e.t.Helper()
	var mu sync.Mutex
	var out []string
	err := e.masters(e.ctx, func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, "offload:*", 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	})
	if err != nil {
		e.t.Fatalf("SCAN: %v", err)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// persistentKeys returns the offload keys that carry no TTL, sorted.
func (e *env) persistentKeys() []string {
	e.t.Helper()
	var out []string
	for _, k := range e.keys() {
		ttl, err := e.rdb.PTTL(e.ctx, k).Result()
		if err != nil {
			e.t.Fatalf("PTTL %s: %v", k, err)
		}
		if ttl == -1 { // go-redis reports "no TTL" as -1 (a Duration of -1ns)
			out = append(out, k)
		}
	}
	return out
}

// snapshot captures everything a fenced write could change about one job.
func (e *env) snapshot(q, id string) string {
	e.t.Helper()
	errs, _ := e.rdb.LRange(e.ctx, queue.ErrorsKey(q, id), 0, -1).Result()
	target, _ := e.rdb.HGetAll(e.ctx, queue.TargetKey(q, id)).Result()
	tokens, _ := e.rdb.HGetAll(e.ctx, queue.TokensKey(q)).Result()
	var sets []string
	for _, k := range []string{queue.ReadyKey(q), queue.ScheduledKey(q), queue.LeasedKey(q), queue.ExpiringKey(q)} {
		s, ok := e.score(k, id)
		sets = append(sets, fmt.Sprintf("%s=%v/%v", k, ok, s))
	}
	b, _ := json.Marshal(map[string]any{"job": e.job(q, id), "errors": errs, "target": target,
		"tokens": tokens, "sets": sets})
	return string(b)
}

// subscription is a pub/sub subscription to one channel.
type subscription struct {
	e       *env
	channel string
	ch      <-chan *redis.Message
}

// subscribe subscribes to channel and returns once the server confirmed it,
// so that every later publish is received.
func (e *env) subscribe(channel string) *subscription {
	e.t.Helper()
	ps := e.rdb.Subscribe(e.ctx, channel)
	e.t.Cleanup(func() { _ = ps.Close() })
	ctx, cancel := context.WithTimeout(e.ctx, eventTimeout)
	defer cancel()
	if _, err := ps.Receive(ctx); err != nil {
		e.t.Fatalf("SUBSCRIBE %s: %v", channel, err)
	}
	return &subscription{e: e, channel: channel, ch: ps.Channel()}
}

// next waits for the next message about this case's queues. On a cluster,
// a message published by an earlier case may reach a node after a later
// subscription (the cluster bus relays PUBLISH asynchronously); every case
// uses its own queue names, so such strays are recognised and skipped.
func (s *subscription) next() string {
	s.e.t.Helper()
	timeout := time.After(eventTimeout)
	for {
		select {
		case m, ok := <-s.ch:
			if !ok {
				s.e.t.Fatalf("subscription to %s closed", s.channel)
			}
			if s.e.ours(m.Payload) {
				return m.Payload
			}
		case <-timeout:
			s.e.t.Fatalf("no message on %s within %v", s.channel, eventTimeout)
			return ""
		}
	}
}

// ours reports whether a pub/sub payload (a queue name, a job id or a
// sentinel) belongs to this case.
func (e *env) ours(payload string) bool {
	name := payload
	if q, ok := queue.QueueOf(payload); ok {
		name = q
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.queues[name]
}

// expect waits for the next message and checks it is payload.
func (s *subscription) expect(payload string) {
	s.e.t.Helper()
	if got := s.next(); got != payload {
		s.e.t.Fatalf("message on %s = %q, want %q", s.channel, got, payload)
	}
}

var sentinelSeq atomic.Int64

// publishScript publishes from the node that owns KEYS[1], which orders the
// message after everything that queue's scripts published before.
var publishScript = redis.NewScript(`redis.call('PUBLISH', ARGV[1], ARGV[2]) return 1`)

// expectQuiet checks that nothing was published on the channel since the
// last message read: it publishes a sentinel from queue q's node and expects
// it to be the next message. No sleeping.
func (s *subscription) expectQuiet(q string) {
	s.e.t.Helper()
	sentinel := "sentinel-" + strconv.FormatInt(sentinelSeq.Add(1), 10)
	s.e.mu.Lock()
	s.e.queues[sentinel] = true
	s.e.mu.Unlock()
	if err := publishScript.Run(s.e.ctx, s.e.rdb, []string{queue.ReadyKey(q)}, s.channel, sentinel).Err(); err != nil {
		s.e.t.Fatalf("publish sentinel: %v", err)
	}
	if got := s.next(); got != sentinel {
		s.e.t.Fatalf("unexpected message %q on %s, want nothing", got, s.channel)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
