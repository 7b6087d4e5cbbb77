package statusstore

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/queue"
)

// Waiter tells waiting requests that their job finished. One Redis
// subscription per process (to queue.ChannelDone) is fanned out to any number
// of waiters, so a waiting request costs a map entry and a channel, not a
// Redis connection.
type Waiter struct {
	rdb redis.UniversalClient

	mu      sync.Mutex
	waiting map[string][]chan struct{}
	ready   chan struct{}
	once    sync.Once
}

// NewWaiter returns a Waiter; Run must be running for it to deliver.
func NewWaiter(rdb redis.UniversalClient) *Waiter {
	return &Waiter{rdb: rdb, waiting: map[string][]chan struct{}{}, ready: make(chan struct{})}
}

// Run holds the subscription until ctx is done. go-redis re-subscribes after a
// lost connection; a completion published while it was away is caught by the
// waiters' own periodic re-read (see Wait).
func (w *Waiter) Run(ctx context.Context) error {
	sub := w.rdb.Subscribe(ctx, queue.ChannelDone)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		return err
	}
	w.once.Do(func() { close(w.ready) })
	ch := sub.Channel(redis.WithChannelSize(1024))
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			w.notify(m.Payload)
		}
	}
}

// Ready is closed once the subscription is live.
func (w *Waiter) Ready() <-chan struct{} { return w.ready }

// Watch registers interest in job id. Call it before the job is enqueued so
// that its completion cannot be missed; call stop when done waiting.
func (w *Waiter) Watch(id string) (done <-chan struct{}, stop func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	w.waiting[id] = append(w.waiting[id], ch)
	w.mu.Unlock()
	return ch, func() { w.forget(id, ch) }
}

// Waiting returns how many requests wait now.
func (w *Waiter) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, chs := range w.waiting {
		n += len(chs)
	}
	return n
}

// notify wakes the waiters of the jobs named in payload: one id, or the
// space-separated ids of a batch of completions recorded together.
func (w *Waiter) notify(payload string) {
	var woken []chan struct{}
	w.mu.Lock()
	if len(w.waiting) > 0 {
		for id := range strings.FieldsSeq(payload) {
			if chs, ok := w.waiting[id]; ok {
				woken = append(woken, chs...)
				delete(w.waiting, id)
			}
		}
	}
	w.mu.Unlock()
	for _, ch := range woken {
		close(ch)
	}
}

func (w *Waiter) forget(id string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	chs := w.waiting[id]
	for i, c := range chs {
		if c == ch {
			chs = append(chs[:i], chs[i+1:]...)
			break
		}
	}
	if len(chs) == 0 {
		delete(w.waiting, id)
	} else {
		w.waiting[id] = chs
	}
}

// recheck is how often a waiter re-reads its job in case a completion message
// was lost while the subscription reconnected.
const recheck = time.Second

// Wait blocks until job id is done (true), or until ctx is done (false). done
// is the channel Watch returned. It re-reads the job every second as a safety
// net.
func (s *Store) Wait(ctx context.Context, id string, done <-chan struct{}) bool {
	t := time.NewTicker(recheck)
	defer t.Stop()
	for {
		select {
		case <-done:
			return true
		case <-ctx.Done():
			return false
		case <-t.C:
			if j, err := s.Get(ctx, id); err == nil && j.Done {
				return true
			}
		}
	}
}
