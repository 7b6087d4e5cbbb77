package tests

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
	s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)

	for _, path := range []string{"/healthz", "/readyz"} {
		resp := s.get(t, path)
		expectStatus(t, resp, http.StatusOK)
		if h := decode[api.Health](t, resp); h.Status != "ok" {
			t.Errorf("%s: %+v", path, h)
		}
	}

	s.Redis.Kill()

	// Readiness follows Redis; liveness does not.
	resp := s.get(t, "/readyz")
	expectStatus(t, resp, http.StatusServiceUnavailable)
	if h := decode[api.Health](t, resp); h.Status == "ok" || h.Checks["redis"] == "" {
		t.Errorf("/readyz without Redis: %+v", h)
	}
	expectStatus(t, s.get(t, "/healthz"), http.StatusOK)

	// Requests that need Redis answer 503 problems promptly: no hang, no 500.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sleep := []byte(`{"kind":"sleep","args":{"ms":1}}`)
	expectProblem(t, s.requestCtx(t, ctx, http.MethodPost, "/v1/jobs", sleep, "Content-Type", "application/json"),
		http.StatusServiceUnavailable)
	expectProblem(t, s.requestCtx(t, ctx, http.MethodGet, "/v1/jobs/"+job.ID, nil), http.StatusServiceUnavailable)
	// Validation needs no Redis: bad input is still refused as such.
	expectProblem(t, s.requestCtx(t, ctx, http.MethodPost, "/v1/jobs", []byte(`{"kind":"nope"}`), "Content-Type", "application/json"),
		http.StatusUnprocessableEntity, "/kind")
	// The server still shuts down cleanly (checked by the cleanup).
}

// TestShutdownWaitsForJobs: SIGTERM lets a running job finish within
// SHUTDOWN_GRACE before the process exits.
func TestShutdownWaitsForJobs(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"SHUTDOWN_GRACE": "10s"})
	job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 3000, "result": "finished"}})
	s.waitState(t, job.ID, api.StateRunning, jobTimeout)
	stopPromptly(t, s, "the 3s job ends")

	// The record, read through a fresh API process on the same Redis.
	a := s.startAPI(t, nil)
	got := decode[api.Job](t, a.get(t, "/v1/jobs/"+job.ID))
	if got.State != api.StateSucceeded || got.Attempt != 1 || string(got.Result) != `"finished"` {
		t.Fatalf("after a graceful shutdown the job is %s (attempt %d, result %s), want succeeded on attempt 1",
			got.State, got.Attempt, got.Result)
	}
}

// TestShutdownAnswersSyncInFlight: a synchronous request in flight at a
// SIGTERM gets its answer when its job ends. The completion subscription
// stays live until the API has drained; it used to end at the signal, and
// the request then learned of the outcome only by re-reading the job a
// second later.
func TestShutdownAnswersSyncInFlight(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"SHUTDOWN_GRACE": "10s"})
	rdb := s.Redis.Client(t)
	answered := make(chan *http.Response, 1)
	go func() {
		answered <- s.request(t, http.MethodPost, "/v1/jobs",
			[]byte(`{"kind":"sleep","args":{"ms":2000,"result":"late"}}`),
			"Content-Type", "application/json", "Expect", "200-ok")
	}()
	deadline := time.Now().Add(jobTimeout)
	var id string
	for {
		list := decode[api.JobList](t, s.get(t, "/v1/jobs?state=running&limit=1"))
		if len(list.Jobs) == 1 {
			id = list.Jobs[0].ID
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the synchronous job is not running after %v", jobTimeout)
		}
		time.Sleep(pollEvery)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	var resp *http.Response
	for resp == nil {
		select {
		case resp = <-answered:
			continue
		case <-time.After(pollEvery):
		}
		n, err := rdb.PubSubNumSub(context.Background(), queue.ChannelDone).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n[queue.ChannelDone] == 0 {
			// Once the job is done and its answer written, the drain may
			// end, and the subscription with it, before the answer is
			// read here; the old code dropped it at the signal, while
			// the job still ran.
			name, _ := queue.QueueOf(id)
			state, err := rdb.HGet(context.Background(), queue.JobKey(name, id), "state").Result()
			if err != nil || !api.Terminal(state) {
				t.Fatalf("the API dropped its completion subscription while its synchronous job was %s (%v)", state, err)
			}
			select {
			case resp = <-answered:
			case <-time.After(jobTimeout):
				t.Fatalf("no answer %v after the job ended %s", jobTimeout, state)
			}
		}
	}
	if resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the synchronous request in flight at SIGTERM answered %v, want 200", resp)
	}
	if got := decode[api.Job](t, resp); string(got.Result) != `"late"` {
		t.Errorf("answer: result %s, want \"late\"", got.Result)
	}
	if err := <-stopped; err != nil {
		t.Errorf("server: %v", err)
	}
}

// shutdownBound is how long a server may take to exit after SIGTERM when
// nothing should hold it longer than a few seconds (the running job ends,
// or SHUTDOWN_GRACE is over, within 3s).
const shutdownBound = 8 * time.Second

// stopPromptly sends SIGTERM to s and expects it to exit cleanly within
// shutdownBound, once what should end it (why) has happened.
func stopPromptly(t *testing.T, s *Server, why string) {
	t.Helper()
	start := time.Now()
	if err := s.stop(); err != nil {
		t.Errorf("%s server: %v", s.Role, err)
	}
	if took := time.Since(start); took > shutdownBound {
		t.Errorf("the server took %v to exit after SIGTERM; it should exit once %s (within %v)",
			took.Round(time.Millisecond), why, shutdownBound)
	}
}

// TestShutdownRequeues: a job still running when SHUTDOWN_GRACE is over is
// interrupted and requeued without consuming an attempt; another process
// picks it up.
func TestShutdownRequeues(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"SHUTDOWN_GRACE": "1s"})
	job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 60000}})
	s.waitState(t, job.ID, api.StateRunning, jobTimeout)
	stopPromptly(t, s, "the 1s SHUTDOWN_GRACE is over")

	a := s.startAPI(t, nil)
	got := decode[api.Job](t, a.get(t, "/v1/jobs/"+job.ID))
	if got.State != api.StateQueued || got.Attempt != 0 || len(got.AttemptErrors) != 0 {
		t.Fatalf("after shutdown the job is %s (attempt %d, attempt_errors %v), want queued, attempt 0, no errors",
			got.State, got.Attempt, got.AttemptErrors)
	}

	// A fresh worker runs it again; cancel it there to finish the test.
	s.startWorker(t, nil)
	running := a.waitState(t, job.ID, api.StateRunning, jobTimeout)
	if running.Attempt != 1 {
		t.Errorf("the requeued job runs as attempt %d, want 1", running.Attempt)
	}
	expectStatus(t, a.del(t, "/v1/jobs/"+job.ID), http.StatusAccepted)
	a.waitState(t, job.ID, api.StateCanceled, cancelBound)
}

// TestWorkerKilled: a worker killed with SIGKILL mid-job loses nothing; once
// its lease expires another worker runs the job to success.
func TestWorkerKilled(t *testing.T) {
	t.Parallel()
	env := map[string]string{"LEASE": "3s"}
	a, ws := startTiers(t, 1, env)
	job := a.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 3000, "result": "survived"}})
	a.waitState(t, job.ID, api.StateRunning, jobTimeout)
	ws[0].Kill(t)

	w := a.startWorker(t, env)
	got := a.waitState(t, job.ID, api.StateSucceeded, 20*time.Second)
	if got.Attempt != 2 || string(got.Result) != `"survived"` {
		t.Errorf("succeeded on attempt %d with result %s, want attempt 2", got.Attempt, got.Result)
	}
	if len(got.AttemptErrors) != 1 || got.AttemptErrors[0].Attempt != 1 ||
		!strings.Contains(got.AttemptErrors[0].Error, "lease") {
		t.Errorf("attempt_errors %+v, want one entry for the lost lease of attempt 1", got.AttemptErrors)
	}
	// The worker that reaped the lease says so, in its log and its metrics.
	lines := w.logLines("leases expired: jobs whose worker stopped heartbeating were requeued, or ended on their last attempt")
	if len(lines) != 1 || lines[0]["queue"] != "default" || lines[0]["jobs"] != 1.0 || lines[0]["level"] != "warn" {
		t.Errorf("the reaping worker logged %v, want one warning for 1 job of queue default", lines)
	}
	if m := string(body(w.get(t, "/metrics"))); !strings.Contains(m, "offload_leases_expired_total{queue=\"default\"} 1\n") {
		t.Errorf("the reaping worker's /metrics has no offload_leases_expired_total{queue=\"default\"} 1")
	}
}

// TestRedisProtocol: the server speaks RESP2 to Redis unless REDIS_URL asks
// for another protocol (queue.RESP tells why).
func TestRedisProtocol(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		query, want, unwanted string
	}{{"", "resp=2", "resp=3"}, {"?protocol=3", "resp=3", ""}} {
		rs := redistest.Start(t)
		s := startOn(t, rs, map[string]string{"REDIS_URL": rs.URL() + c.query})
		job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 1}})
		s.waitState(t, job.ID, api.StateSucceeded, jobTimeout)
		list, err := rs.Client(t).ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(list, c.want) || c.unwanted != "" && strings.Contains(list, c.unwanted) {
			t.Errorf("REDIS_URL%s: want clients with %s and none with %q:\n%s", c.query, c.want, c.unwanted, list)
		}
		s.Stop(t)
	}
}

// TestEmbeddedRedisExpires: with REDIS_URL unset the server runs on its
// embedded Redis, and what the retention settings promise still happens
// there: a finished job answers 410 once RETENTION has passed, then 404 once
// TOMBSTONE has; its Idempotency-Key, still remembered, replays as 410; and
// the key is free again after IDEMPOTENCY_TTL.
func TestEmbeddedRedisExpires(t *testing.T) {
	t.Parallel()
	s := startOn(t, nil, map[string]string{"RETENTION": "1s", "TOMBSTONE": "1s", "IDEMPOTENCY_TTL": "8s"})
	payload := []byte(`{"kind":"sleep","args":{"ms":1}}`)
	post := func() *http.Response {
		return s.request(t, http.MethodPost, "/v1/jobs", payload, "Content-Type", "application/json", "Idempotency-Key", "k1")
	}
	resp := post()
	expectStatus(t, resp, http.StatusAccepted)
	first := decode[api.Job](t, resp)
	s.waitState(t, first.ID, api.StateSucceeded, jobTimeout)
	s.poll(t, first.ID, 20*time.Second, "410 Gone", func(resp *http.Response) bool {
		return resp.StatusCode == http.StatusGone
	})
	s.poll(t, first.ID, 20*time.Second, "404 Not Found", func(resp *http.Response) bool {
		return resp.StatusCode == http.StatusNotFound
	})
	if p := expectProblem(t, post(), http.StatusGone); p.JobID != first.ID {
		t.Errorf("replay of an expired job: job_id %q, want %s", p.JobID, first.ID)
	}
	// Once the key has expired with its TTL, the same request is a new job.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := post()
		if resp.StatusCode == http.StatusAccepted {
			if again := decode[api.Job](t, resp); again.ID == first.ID {
				t.Fatalf("Idempotency-Key k1 replays job %s as accepted after it expired", first.ID)
			}
			break
		}
		expectProblem(t, resp, http.StatusGone)
		if time.Now().After(deadline) {
			t.Fatal("Idempotency-Key k1 still remembered 20s after its 8s TTL")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStartupFailureExits: a process that cannot serve (its port is taken,
// or it finds no Redis for the completion subscription) exits non-zero with
// the error logged, in every role, instead of lingering with its worker
// tier running and no API.
func TestStartupFailureExits(t *testing.T) {
	rs := redistest.Start(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = taken.Close() })
	noRedis, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"all, port taken", map[string]string{"ROLE": "all", "REDIS_URL": rs.URL(), "ADDR": taken.Addr().String()}, "address already in use"},
		{"worker, port taken", map[string]string{"ROLE": "worker", "REDIS_URL": rs.URL(), "ADDR": taken.Addr().String()}, "address already in use"},
		{"all, no redis", map[string]string{"ROLE": "all", "REDIS_URL": "redis://127.0.0.1:" + strconv.Itoa(noRedis) + "/0",
			"ADDR": "127.0.0.1:0", "SHUTDOWN_GRACE": "1s"},
			"Redis at redis://127.0.0.1:" + strconv.Itoa(noRedis) + "/0: "},
		{"worker, no redis", map[string]string{"ROLE": "worker", "REDIS_URL": "redis://127.0.0.1:" + strconv.Itoa(noRedis) + "/0",
			"ADDR": "127.0.0.1:0", "SHUTDOWN_GRACE": "1s"}, "Redis at redis://127.0.0.1:" + strconv.Itoa(noRedis) + "/0: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(serverBin)
			cmd.Env = environ(map[string]string{"LOG_FORMAT": "json", "ROLE": c.env["ROLE"],
				"REDIS_URL": c.env["REDIS_URL"], "ADDR": c.env["ADDR"], "SHUTDOWN_GRACE": c.env["SHUTDOWN_GRACE"]})
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.SysProcAttr = sysProcAttr()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 1 {
					t.Errorf("exit: %v, want exit status 1", err)
				}
				if log := out.String(); !strings.Contains(log, "offload stopped") || !strings.Contains(log, c.want) {
					t.Errorf("the log does not say why it stopped (%q):\n%s", c.want, lastLines(log, 20))
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Fatalf("still running after 30s:\n%s", lastLines(out.String(), 20))
			}
		})
	}
}
