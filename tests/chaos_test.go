package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
)

// The chaos test's parameters (GitHub issue "Delivery engine", "Chaos test").
const (
	chaosJobs        = 5000 // jobs submitted (chaosJobsShort with -short)
	chaosJobsShort   = 500
	chaosSubmitters  = 16 // goroutines POSTing at once
	chaosConcurrency = 20 // CONCURRENCY of each of the two workers
	chaosMaxSleepMS  = 50 // a job sleeps 0..chaosMaxSleepMS ms
	// chaosMaxAttempts is sent with every job. A job that happens to be
	// running at three kills would exhaust the sleep kind's default of 3
	// attempts and end failed, as documented; that is a (rare) outcome of
	// the dice, not a lost job, so the test gives every job room for more.
	chaosMaxAttempts = 10
	// chaosKillMin and chaosKillMax bound the time between two kills; each
	// kill takes the other worker.
	chaosKillMin = 2 * time.Second
	chaosKillMax = 3 * time.Second
	// chaosKillTail is how long the killing goes on after the last POST.
	chaosKillTail = 5 * time.Second
	// chaosSubmitMin is the least time the submission takes: job i is not
	// POSTed before i/n of it has passed, so that the jobs meet several
	// kills even when they are few (-short) or the API is fast. At full size
	// the API is the slower of the two on a 2-core machine.
	chaosSubmitMin = 8 * time.Second
	// chaosSubmitBound bounds the whole submission.
	chaosSubmitBound = 60 * time.Second
	// chaosDrainBound bounds the wait, after the last kill, for every job to
	// finish: LEASE (3s) plus a reaper sweep (1s) requeues the jobs of the
	// last killed worker, and the rest is the backlog.
	chaosDrainBound = 90 * time.Second
	// chaosSeed seeds the sleeps and the kill schedule.
	chaosSeed = 20250115
)

// TestChaos: 5,000 jobs are submitted over HTTP to a ROLE=api process while
// two ROLE=worker processes are SIGKILLed and restarted, one after the other,
// every 2-3s, during the submission and for a few seconds after it. Then the
// workers run undisturbed. Every job must end succeeded with its own result:
// at-least-once delivery loses nothing when a worker dies at any instant. The
// duplicate executions (attempts beyond the first) are reported and bounded
// by what the kills could have interrupted.
//
// The test is not parallel: it runs alone, before the parallel tests, so that
// its timing does not depend on what else runs on the machine.
func TestChaos(t *testing.T) {
	n := chaosJobs
	if testing.Short() {
		n = chaosJobsShort
	}
	env := map[string]string{"CONCURRENCY": strconv.Itoa(chaosConcurrency), "LEASE": "3s"}
	a, ws := startTiers(t, 2, env)
	router(t, a.URL) // load the OpenAPI document here, not in a submitter

	// The jobs: a seeded random sleep and a distinct result each.
	rng := rand.New(rand.NewPCG(chaosSeed, 1))
	bodies := make([][]byte, n)
	results := make([]string, n)
	for i := range n {
		results[i] = fmt.Sprintf("chaos-%05d", i)
		bodies[i] = jsonBytes(t, map[string]any{"kind": "sleep", "max_attempts": chaosMaxAttempts,
			"args": map[string]any{"ms": rng.IntN(chaosMaxSleepMS + 1), "result": results[i]}})
	}

	// Submission, concurrent with the killing below. The submitters report
	// with t.Errorf only (safe from any goroutine) and are waited for before
	// the test returns, even when it fails early.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), chaosSubmitBound)
	ids := make([]string, n) // ids[i] is job i's id; each index has one writer
	var next, rejected atomic.Int64
	var submitters sync.WaitGroup
	for range chaosSubmitters {
		submitters.Add(1)
		go func() {
			defer submitters.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if wait := time.Until(start.Add(chaosSubmitMin * time.Duration(i) / time.Duration(n))); wait > 0 {
					time.Sleep(wait)
				}
				id, err := chaosSubmit(ctx, t, a, bodies[i])
				if err != nil {
					if rejected.Add(1) <= 10 {
						t.Errorf("job %d: POST /v1/jobs: %v", i, err)
					}
					continue
				}
				ids[i] = id
			}
		}()
	}
	defer func() {
		cancel()
		submitters.Wait()
	}()
	submitted := make(chan struct{})
	go func() {
		submitters.Wait()
		close(submitted)
	}()

	// The killing: SIGKILL one worker (waiting until the process is
	// reaped), restart it at once with the same environment, and take the
	// other one next time.
	killRNG := rand.New(rand.NewPCG(chaosSeed, 2))
	interval := func() time.Duration {
		return chaosKillMin + time.Duration(killRNG.Int64N(int64(chaosKillMax-chaosKillMin)+1))
	}
	var (
		kills      int
		killedAt   []time.Duration // since start
		restarts   []time.Duration // how long each restart took
		submitEnd  time.Time
		stopKillAt time.Time
		victim     int
		lastKill   time.Time
	)
	workers := slices.Clone(ws) // every worker process, killed or not
	nextKill := time.Now().Add(interval())
	for {
		// Each worker dies at least once, even in a -short run.
		if !stopKillAt.IsZero() && nextKill.After(stopKillAt) && kills >= 2 {
			break
		}
		timer := time.NewTimer(time.Until(nextKill))
		select {
		case <-submitted:
			timer.Stop()
			submitted = nil
			submitEnd = time.Now()
			stopKillAt = submitEnd.Add(chaosKillTail)
			continue
		case <-timer.C:
		}
		ws[victim].Kill(t)
		lastKill = time.Now()
		kills++
		killedAt = append(killedAt, lastKill.Sub(start).Round(time.Millisecond))
		ws[victim] = a.startWorker(t, env)
		restarts = append(restarts, time.Since(lastKill).Round(time.Millisecond))
		workers = append(workers, ws[victim])
		victim = 1 - victim
		nextKill = time.Now().Add(interval())
	}
	if got := rejected.Load(); got > 0 {
		t.Fatalf("%d of %d POST /v1/jobs did not answer 202 (first ones above): jobs lost at the door", got, n)
	}
	if missing := slices.Index(ids, ""); missing >= 0 {
		t.Fatalf("job %d was never submitted: the submission did not end within %v", missing, chaosSubmitBound)
	}
	t.Logf("submitted %d jobs in %v (%.0f/s) with %d submitters; %d kills at %v, restarts took %v",
		n, submitEnd.Sub(start).Round(time.Millisecond), float64(n)/submitEnd.Sub(start).Seconds(),
		chaosSubmitters, kills, killedAt, restarts)

	// Undisturbed, the workers must finish every job.
	counts := chaosWaitDone(t, a, n, chaosDrainBound)
	end := time.Now()
	if counts[api.StateSucceeded] != n {
		t.Errorf("queue counts %v, want %d succeeded and nothing else", counts, n)
	}

	// Every submitted job, and only those, is listed succeeded, with its own
	// result.
	index := make(map[string]int, n)
	for i, id := range ids {
		if _, dup := index[id]; dup {
			t.Fatalf("two submissions answered the same job id %s", id)
		}
		index[id] = i
	}
	if failed := chaosList(t, a, api.StateFailed); len(failed) > 0 {
		t.Errorf("%d jobs failed, e.g. %s: %s", len(failed), failed[0].ID, jsonBytes(t, failed[0]))
	}
	seen := make(map[string]bool, n)
	dups, maxAttempt := 0, 0
	var retried []string
	for _, job := range chaosList(t, a, api.StateSucceeded) {
		i, ok := index[job.ID]
		switch {
		case !ok:
			t.Errorf("job %s is listed succeeded but was never submitted", job.ID)
			continue
		case seen[job.ID]:
			t.Errorf("job %s is listed twice", job.ID)
			continue
		}
		seen[job.ID] = true
		var res string
		if err := json.Unmarshal(job.Result, &res); err != nil || res != results[i] {
			t.Errorf("job %d (%s): result %s, want %q", i, job.ID, job.Result, results[i])
		}
		if job.Attempt < 1 || job.Attempt > chaosMaxAttempts {
			t.Errorf("job %d (%s): succeeded on attempt %d", i, job.ID, job.Attempt)
			continue
		}
		dups += job.Attempt - 1
		maxAttempt = max(maxAttempt, job.Attempt)
		if job.Attempt > 1 {
			retried = append(retried, job.ID)
		}
	}
	var lost []int
	for i, id := range ids {
		if !seen[id] {
			lost = append(lost, i)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d jobs are not listed succeeded, e.g. job %d (%s): %s", len(lost), n, lost[0],
			ids[lost[0]], body(a.get(t, "/v1/jobs/"+ids[lost[0]])))
	}

	// A repeated attempt is only ever the work of a lost lease: every extra
	// attempt of a job left an attempt error saying so.
	for _, id := range retried {
		job := decode[api.Job](t, a.get(t, "/v1/jobs/"+id))
		if len(job.AttemptErrors) != job.Attempt-1 ||
			slices.ContainsFunc(job.AttemptErrors, func(e api.AttemptError) bool { return !strings.Contains(e.Error, "lease") }) {
			t.Errorf("job %s succeeded on attempt %d with attempt_errors %+v, want %d lease expiries",
				id, job.Attempt, job.AttemptErrors, job.Attempt-1)
		}
	}

	// No live worker lost a lease or failed to record an attempt: the only
	// repeated attempts are those the kills interrupted. A job that waited
	// too long for a slot of a CPU-starved worker goes back to its queue
	// unstarted (mode "return", no attempt spent): not a lost attempt.
	var unrecorded []map[string]any
	for _, w := range workers {
		for _, l := range w.logLines("job attempt") {
			if l["mode"] == queue.FailReturn && l["state"] == api.StateQueued {
				continue
			}
			if l["state"] != api.StateSucceeded {
				unrecorded = append(unrecorded, l)
			}
		}
	}
	if len(unrecorded) > 0 {
		t.Errorf("live workers logged %d attempts that did not succeed, e.g. %v", len(unrecorded), unrecorded[0])
	}

	// Bound on the duplicates: a kill takes down one process, which holds
	// at most CONCURRENCY started attempts whose outcome is not recorded (the
	// pool fetches no more than its free slots, and frees a slot only once
	// the attempt is recorded; a job leased but not yet started is requeued
	// without counting an attempt). A live worker renews its leases every
	// LEASE/3, so it loses none. Hence at most kills × CONCURRENCY attempts
	// run again.
	bound := kills * chaosConcurrency
	total := end.Sub(start)
	t.Logf("%d jobs succeeded in %v (%.0f jobs/s): %d kills, %d duplicate executions (%d jobs ran more than once, "+
		"at most %d attempts; bound %d = kills × CONCURRENCY); drained %v after the last kill",
		n, total.Round(time.Millisecond), float64(n)/total.Seconds(), kills, dups, len(retried), maxAttempt, bound,
		end.Sub(lastKill).Round(time.Millisecond))
	if dups > bound {
		t.Errorf("%d duplicate executions, more than the %d attempts %d kills of a worker with CONCURRENCY=%d could interrupt",
			dups, bound, kills, chaosConcurrency)
	}
}

// chaosSubmit POSTs one job and returns its id. It is safe to call from any
// goroutine: it never stops the test, it returns an error instead.
func chaosSubmit(ctx context.Context, t *testing.T, a *Server, payload []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.URL+"/v1/jobs", bytes.NewReader(payload))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp := do(t, req) // validates the answer against the OpenAPI document
	if resp == nil {
		return "", fmt.Errorf("no answer")
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("status %d, want 202: %s", resp.StatusCode, truncate(body(resp), 500))
	}
	var job api.Job
	if err := json.Unmarshal(body(resp), &job); err != nil || job.ID == "" {
		return "", fmt.Errorf("202 without a status document (%v): %s", err, truncate(body(resp), 500))
	}
	if loc := resp.Header.Get("Location"); loc != "/v1/jobs/"+job.ID {
		return "", fmt.Errorf("202 with Location %q for job %s", loc, job.ID)
	}
	return job.ID, nil
}

// chaosWaitDone polls the counts of the default queue until n jobs are done
// and none is waiting or running, and returns the counts. It fails the test
// after bound, naming the states that still hold jobs.
func chaosWaitDone(t *testing.T, a *Server, n int, bound time.Duration) map[string]int {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		q := decode[api.Queue](t, a.get(t, "/v1/queues/default"))
		done, pending := 0, 0
		var stuck []string
		for _, st := range api.States {
			c := q.Counts[st]
			if api.Terminal(st) {
				done += c
			} else if c > 0 {
				pending += c
				stuck = append(stuck, fmt.Sprintf("%s=%d", st, c))
			}
		}
		if q.Counts[api.StateFailed] > 0 || q.Counts[api.StateCanceled] > 0 {
			t.Errorf("jobs ended badly: counts %v", q.Counts)
			return q.Counts
		}
		if done >= n && pending == 0 {
			return q.Counts
		}
		if time.Now().After(deadline) {
			sort.Strings(stuck)
			t.Fatalf("%d of %d jobs not done %v after the last kill: still %s (counts %v)",
				n-done, n, bound, strings.Join(stuck, ", "), q.Counts)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// chaosList pages through GET /v1/jobs?state=state and returns every job.
func chaosList(t *testing.T, a *Server, state string) []api.Job {
	t.Helper()
	query := url.Values{"state": {state}, "limit": {"200"}}
	var out []api.Job
	for range 1000 {
		resp := a.get(t, "/v1/jobs?"+query.Encode())
		expectStatus(t, resp, http.StatusOK)
		page := decode[api.JobList](t, resp)
		out = append(out, page.Jobs...)
		if page.NextCursor == "" {
			return out
		}
		query.Set("cursor", page.NextCursor)
	}
	t.Fatalf("GET /v1/jobs?state=%s: more than 1000 pages", state)
	return nil
}
