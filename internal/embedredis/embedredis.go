// Package embedredis runs the in-memory Redis (miniredis) that the server
// uses when REDIS_URL is unset. miniredis keeps its own clock for key
// expiry and only moves it when told: left alone, a key's TTL never runs out,
// so retention, tombstones and idempotency keys would live forever. This
// package moves that clock with the wall clock. It does not make the
// embedded Redis durable or shareable: that is what REDIS_URL is for.
package embedredis

import (
	"fmt"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Tick is how often the expiry clock follows the wall clock: a key expires
// at most this late.
const Tick = 100 * time.Millisecond

// Server is a running miniredis whose TTLs run out in real time.
type Server struct {
	mr   *miniredis.Miniredis
	stop chan struct{}
	wg   sync.WaitGroup
}

// Start listens on addr ("127.0.0.1:0" for a free port) and starts moving
// the expiry clock every tick.
func Start(addr string, tick time.Duration) (*Server, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(addr); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	s := &Server{mr: mr, stop: make(chan struct{})}
	s.wg.Add(1)
	go s.follow(tick)
	return s, nil
}

// follow advances miniredis's clock by the wall time elapsed since the last
// tick, so that every TTL decreases as it would on a real Redis.
func (s *Server) follow(tick time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mr.SetTime(now)
			s.mr.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.mr.Addr() }

// Close stops the clock and the server.
func (s *Server) Close() {
	close(s.stop)
	s.wg.Wait()
	s.mr.Close()
}
