package workers

import (
	"slices"

	"github.com/offload-dev/offload/queue"
)

// Reserve takes a free slot of the running pool for a job of queue name that
// the caller is about to store already leased (queue.Handoff): a synchronous
// request in a process that also runs workers then needs no fetch. run starts
// the slot on the delivery, exactly as if the pool had fetched it
// (heartbeats, cancellation, timeout, outcome); release gives the slot back
// unused. One of them must be called, once. ok is false when the pool is not
// running or shutting down, does not drain name, or has no free slot.
func (p *Pool) Reserve(name string) (run func(*queue.Delivery), release func(), ok bool) {
	if !slices.ContainsFunc(p.cfg.Queues, func(w QueueWeight) bool { return w.Name == name }) {
		return nil, nil, false
	}
	p.mu.Lock()
	free := min(p.cfg.Concurrency-p.busy-p.held, maxRecording-(len(p.running)-p.busy))
	if !p.accepting || free < 1 {
		p.mu.Unlock()
		return nil, nil, false
	}
	p.held++
	jobsCtx, wg := p.jobsCtx, p.jobs
	wg.Add(1) // shutdown waits for the reservation
	p.mu.Unlock()
	run = func(d *queue.Delivery) {
		p.start(jobsCtx, d, wg)
		wg.Done()
	}
	release = func() {
		p.unreserve(1)
		wg.Done()
	}
	return run, release, true
}
