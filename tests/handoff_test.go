package tests

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/offload-dev/offload/api"
)

// TestSyncHandoff: in a process that runs the API and workers (ROLE=all), a
// synchronous job of an idle queue is stored already leased to a free local
// slot and run without a fetch; when the queue is paused the job is not
// handed off, and an asynchronous job never is.
func TestSyncHandoff(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"SYNC_WAIT_MAX": "2s"})
	s.waitSlots(t, "default", 1)
	if n := handedOff(t, s); n != 0 {
		t.Fatalf("%v jobs handed off before any request", n)
	}
	for i := range 3 {
		resp := s.postSync(t, sleepJob(1, map[string]any{"i": i}), "Expect", "200-ok")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Expect: 200-ok: %s: %s", resp.Status, body(resp))
		}
		job := expectResult(t, body(resp), map[string]any{"i": i})
		if job.Attempt != 1 || job.StartedAt == nil {
			t.Errorf("handed-off job: attempt %d, started_at %v", job.Attempt, job.StartedAt)
		}
	}
	if n := handedOff(t, s); n != 3 {
		t.Errorf("offload_jobs_handed_off_total = %v after 3 synchronous jobs on an idle queue, want 3", n)
	}
	// Asynchronous: through the queue.
	expectStatus(t, s.postSync(t, sleepJob(1, nil)), http.StatusAccepted)
	// Paused: Prefer: wait answers 202 after the wait, through the queue.
	if q := decode[api.Queue](t, s.post(t, "/v1/queues/default/pause")); !q.Paused {
		t.Fatalf("pause answered %+v", q)
	}
	expectStatus(t, s.postSync(t, sleepJob(1, nil), "Prefer", "wait=1"), http.StatusAccepted)
	if n := handedOff(t, s); n != 3 {
		t.Errorf("offload_jobs_handed_off_total = %v after an async job and a job for a paused queue, want still 3", n)
	}
}

// handedOff reads offload_jobs_handed_off_total of kind sleep from /metrics.
func handedOff(t *testing.T, s *Server) float64 {
	t.Helper()
	resp := s.get(t, "/metrics")
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, `offload_jobs_handed_off_total{kind="sleep",queue="default"} `) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			return v
		}
	}
	return 0
}
