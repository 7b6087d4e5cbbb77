package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/redis/go-redis/v9"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
)

// Iterative jobs end to end: a report over a million rows survives the
// SIGKILL of its worker and is cut into run slices, and in both cases counts
// every row exactly once.

const (
	// bigReportRows is the size of the CSV of these tests (about 16 MB).
	bigReportRows = 1_000_000
	// bigReportRegions is the number of distinct group keys.
	bigReportRegions = 50
	// bigBodyLimit lets the API accept the CSV.
	bigBodyLimit = "67108864"
	// bigReportTimeout bounds a big report from submission to its outcome.
	bigReportTimeout = 2 * time.Minute
)

// reportGroup is one group of a report, as served at /v1/reports/{id}.
type reportGroup struct {
	Key   string             `json:"key"`
	Count int64              `json:"count"`
	Sums  map[string]float64 `json:"sums"`
}

// reportDoc is a report as served at /v1/reports/{id}.
type reportDoc struct {
	GroupBy string        `json:"group_by"`
	Sum     []string      `json:"sum"`
	Rows    int64         `json:"rows"`
	Groups  []reportGroup `json:"groups"`
}

// bigReport generates a CSV of bigReportRows rows "region,amount" with
// integer amounts (every sum is an integer below 2^53, so float64 sums are
// exact) and returns it with the report it must produce, computed here.
func bigReport(t *testing.T) (csv string, want reportDoc) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 11))
	counts := make([]int64, bigReportRegions)
	sums := make([]int64, bigReportRegions)
	var b strings.Builder
	b.Grow(bigReportRows * 18)
	b.WriteString("region,amount\n")
	for range bigReportRows {
		r, amount := rng.IntN(bigReportRegions), rng.Int64N(1_000_000)
		counts[r]++
		sums[r] += amount
		fmt.Fprintf(&b, "region-%02d,%d\n", r, amount)
	}
	want = reportDoc{GroupBy: "region", Sum: []string{"amount"}, Rows: bigReportRows}
	for r := range bigReportRegions { // keys sort as the indexes do
		want.Groups = append(want.Groups, reportGroup{Key: fmt.Sprintf("region-%02d", r), Count: counts[r],
			Sums: map[string]float64{"amount": float64(sums[r])}})
	}
	return b.String(), want
}

// reportCheckpoint is the part of a report's checkpoint these tests read.
type reportCheckpoint struct {
	Offset int64 `json:"offset"`
	Rows   int64 `json:"rows"`
}

// record is what these tests watch of a job while it runs.
type record struct {
	State   string
	Attempt int
	Ckpt    reportCheckpoint
}

// watch reads job id's state, attempt and checkpoint straight from its
// record in Redis. The status resource cannot be polled every 20ms for that
// while a job has large arguments: it reads the whole record (HGETALL in
// statusstore.Get), 16 MB of arguments included, and such polling saturates
// Redis until heartbeats miss the 3s lease. The status document is read at
// the points that matter instead.
func (s *Server) watch(t *testing.T, rdb *redis.Client, id string) record {
	t.Helper()
	name, ok := queue.QueueOf(id)
	if !ok {
		t.Fatalf("job id %q names no queue", id)
	}
	v, err := rdb.HMGet(context.Background(), queue.JobKey(name, id), "state", "attempt", "ckpt").Result()
	if err != nil {
		t.Fatalf("read job %s: %v", id, err)
	}
	var r record
	r.State, _ = v[0].(string)
	a, _ := v[1].(string)
	r.Attempt, _ = strconv.Atoi(a)
	if c, _ := v[2].(string); c != "" {
		if err := json.Unmarshal([]byte(c), &r.Ckpt); err != nil {
			t.Fatalf("job %s: checkpoint %s: %v", id, truncate([]byte(c), 500), err)
		}
	}
	if r.State != api.StateSucceeded && api.Terminal(r.State) {
		t.Fatalf("report %s ended %s: %s", id, r.State, body(s.get(t, "/v1/jobs/"+id)))
	}
	return r
}

// listed returns job id's status document from GET /v1/jobs (a succeeded
// report's own resource answers 303 without it).
func (s *Server) listed(t *testing.T, kind, id string) api.Job {
	t.Helper()
	resp := s.get(t, "/v1/jobs?kind="+kind+"&limit=100")
	expectStatus(t, resp, http.StatusOK)
	for _, j := range decode[api.JobList](t, resp).Jobs {
		if j.ID == id {
			return j
		}
	}
	t.Fatalf("job %s is not in the list of %s jobs", id, kind)
	return api.Job{}
}

// expectReport GETs the report of job id and compares it with want exactly.
func (s *Server) expectReport(t *testing.T, id string, want reportDoc) {
	t.Helper()
	resp := s.get(t, "/v1/reports/"+id)
	expectStatus(t, resp, http.StatusOK)
	got := decode[reportDoc](t, resp)
	if got.GroupBy != want.GroupBy || len(got.Sum) != 1 || got.Sum[0] != "amount" ||
		got.Rows != want.Rows || len(got.Groups) != len(want.Groups) {
		t.Fatalf("report: group_by %q, sum %v, %d rows, %d groups; want %q, [amount], %d rows, %d groups",
			got.GroupBy, got.Sum, got.Rows, len(got.Groups), want.GroupBy, want.Rows, len(want.Groups))
	}
	for i, w := range want.Groups {
		g := got.Groups[i]
		if g.Key != w.Key || g.Count != w.Count || len(g.Sums) != 1 || g.Sums["amount"] != w.Sums["amount"] {
			t.Errorf("group %d: %s count %d sum %v, want %s count %d sum %v", i, g.Key, g.Count,
				g.Sums["amount"], w.Key, w.Count, w.Sums["amount"])
		}
	}
}

// submitBigReport submits a report of csv and returns its id. It does what
// submit does, with a patient client: on a loaded machine, accepting 16 MB
// (reading, validating, storing it) may take longer than httpClient's 20s.
func submitBigReport(t *testing.T, a *Server, csv string) string {
	t.Helper()
	payload := jsonBytes(t, map[string]any{"kind": "report",
		"args": map[string]any{"csv": csv, "group_by": "region", "sum": []string{"amount"}}})
	req, err := http.NewRequest(http.MethodPost, a.URL+"/v1/jobs", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	rt := router(t, a.URL)
	start := time.Now()
	resp, err := (&http.Client{Timeout: bigReportTimeout}).Do(req)
	if err != nil {
		t.Fatalf("POST /v1/jobs: %v", err)
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("POST /v1/jobs: reading body: %v", err)
	}
	t.Logf("POST /v1/jobs of %d bytes answered %s in %v", len(payload), resp.Status, time.Since(start).Round(time.Millisecond))
	route, params, err := rt.FindRoute(req)
	if err != nil {
		t.Fatalf("POST /v1/jobs: %v", err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(data)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		t.Errorf("POST /v1/jobs answered %s, which the OpenAPI document does not describe: %v", resp.Status, err)
	}
	var job api.Job
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(data, &job) != nil || job.ID == "" ||
		resp.Header.Get("Location") != "/v1/jobs/"+job.ID {
		t.Fatalf("POST /v1/jobs: %s, Location %q: %s; want 202 with the status document", resp.Status,
			resp.Header.Get("Location"), truncate(data, 2000))
	}
	return job.ID
}

// TestReportIterationSurvivesKill: the worker running a million-row report
// is SIGKILLed past 30%; once its lease expires another worker resumes from
// the last checkpoint (the cursor never goes back) and the report counts
// every row exactly once.
func TestReportIterationSurvivesKill(t *testing.T) {
	// Not parallel: each of these tests moves its 16 MB of arguments
	// through Redis a dozen times; together, on a small machine, they slow
	// each other past the 3s lease.
	csv, want := bigReport(t)
	env := map[string]string{"LEASE": "3s", "BODY_LIMIT": bigBodyLimit, "MAX_RUN_SLICE": "0"}
	a, ws := startTiers(t, 1, env)
	rdb := a.Redis.Client(t)
	id := submitBigReport(t, a, csv)
	start := time.Now()

	// Past 30%, by the checkpoint's cursor: kill the worker.
	for {
		r := a.watch(t, rdb, id)
		if r.State == api.StateSucceeded {
			t.Fatal("the report finished before the worker could be killed")
		}
		if r.Ckpt.Rows >= bigReportRows*3/10 {
			break
		}
		if time.Since(start) > bigReportTimeout {
			t.Fatalf("the report is not 30%% done after %v (checkpoint at row %d)", bigReportTimeout, r.Ckpt.Rows)
		}
		// A millisecond, not pollEvery: the rows from 30% to the end take
		// about 160ms here, and a machine many times as fast must still
		// be caught inside them (a poll is one HMGET).
		time.Sleep(time.Millisecond)
	}
	ws[0].Kill(t)
	resp := a.get(t, "/v1/jobs/"+id)
	expectStatus(t, resp, http.StatusOK)
	job := decode[api.Job](t, resp)
	var killed reportCheckpoint
	if err := json.Unmarshal(job.Checkpoint, &killed); err != nil || job.State != api.StateRunning ||
		killed.Rows < bigReportRows*3/10 || killed.Rows >= bigReportRows {
		t.Fatalf("status document after the kill: state %s, checkpoint %s (%v); want running, past 30%% and not done",
			job.State, truncate(job.Checkpoint, 200), err)
	}
	t.Logf("worker killed at row %d of %d (progress %.0f%%, %q) %v after submission", killed.Rows, bigReportRows,
		job.Progress.Percent, job.Progress.Message, time.Since(start).Round(time.Millisecond))

	// A new worker reaps the expired lease and resumes the report from its
	// checkpoint: the cursor never goes back.
	a.startWorker(t, env)
	last, resumedAt := killed, time.Duration(0)
	for {
		r := a.watch(t, rdb, id)
		if r.Ckpt.Rows < last.Rows || r.Ckpt.Offset < last.Offset {
			t.Fatalf("the checkpoint went back from row %d to row %d (state %s, attempt %d): the report restarted",
				last.Rows, r.Ckpt.Rows, r.State, r.Attempt)
		}
		if r.Ckpt.Rows > killed.Rows && resumedAt == 0 {
			resumedAt = time.Since(start)
		}
		if r.State == api.StateSucceeded {
			break
		}
		last = r.Ckpt
		if time.Since(start) > bigReportTimeout {
			t.Fatalf("the report is not done after %v (state %s, checkpoint at row %d)", bigReportTimeout,
				r.State, r.Ckpt.Rows)
		}
		time.Sleep(pollEvery)
	}
	t.Logf("resumed past the kill's checkpoint %v after submission, done after %v", resumedAt.Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond))
	resp = a.waitSeeOther(t, id, jobTimeout)
	if loc := resp.Header.Get("Location"); loc != "/v1/reports/"+id {
		t.Errorf("303 Location %q", loc)
	}
	a.expectReport(t, id, want)
	// The killed attempt counts (its lease expired); a slow machine may
	// have let a lease expire once more, within max_attempts.
	final := a.listed(t, "report", id)
	errs := attemptErrors(t, rdb, id)
	if final.Attempt < 2 || len(errs) != final.Attempt-1 {
		t.Errorf("final document: attempt %d, attempt errors %q; want attempt 2 after one expired lease",
			final.Attempt, errs)
	}
	for _, e := range errs {
		if !strings.Contains(e, "lease expired") {
			t.Errorf("attempt error %s is not the expired lease of the killed worker", e)
		}
	}
}

// attemptErrors returns the attempt history of job id, read from Redis (the
// list of jobs does not carry it, and the status resource of a succeeded
// report is a redirect).
func attemptErrors(t *testing.T, rdb *redis.Client, id string) []string {
	t.Helper()
	name, _ := queue.QueueOf(id)
	errs, err := rdb.LRange(context.Background(), queue.ErrorsKey(name, id), 0, -1).Result()
	if err != nil {
		t.Fatalf("read the attempt errors of %s: %v", id, err)
	}
	return errs
}

// TestReportIterationRunSlices: with MAX_RUN_SLICE=25ms a million-row
// report is handed back to its queue at a checkpoint many times, never
// consuming an attempt, and counts every row exactly once. The slice is
// shorter than a delivery's reading of the 18 MB of args on any machine
// this runs on (about 90 ms here, where the whole report takes about 230
// ms in one delivery): every delivery then takes one step of 10,000 rows
// and yields, 100 deliveries however fast the machine is (about 15 s here;
// a slice of 300ms let this host finish in one delivery, and 100ms would
// on a machine 2.5 times as fast).
func TestReportIterationRunSlices(t *testing.T) {
	// Not parallel: see TestReportIterationSurvivesKill.
	const slice = 25 * time.Millisecond
	csv, want := bigReport(t)
	a, ws := startTiers(t, 1, map[string]string{"BODY_LIMIT": bigBodyLimit, "MAX_RUN_SLICE": slice.String()})
	rdb := a.Redis.Client(t)
	id := submitBigReport(t, a, csv)
	start := time.Now()

	var last reportCheckpoint
	advances := 0
	for {
		r := a.watch(t, rdb, id)
		if r.Attempt > 1 {
			t.Fatalf("attempt %d: a run slice consumed an attempt", r.Attempt)
		}
		if r.Ckpt.Rows < last.Rows {
			t.Fatalf("the checkpoint went back from row %d to row %d", last.Rows, r.Ckpt.Rows)
		}
		if r.Ckpt.Rows > last.Rows {
			advances++
		}
		if r.State == api.StateSucceeded {
			break
		}
		last = r.Ckpt
		if time.Since(start) > bigReportTimeout {
			t.Fatalf("the report is not done after %v (checkpoint at row %d)", bigReportTimeout, r.Ckpt.Rows)
		}
		time.Sleep(pollEvery)
	}
	elapsed := time.Since(start)
	a.waitSeeOther(t, id, jobTimeout)
	a.expectReport(t, id, want)

	final := a.listed(t, "report", id)
	if errs := attemptErrors(t, rdb, id); final.Attempt != 1 || len(errs) != 0 {
		t.Errorf("final document: attempt %d, attempt errors %q; want attempt 1 and none", final.Attempt, errs)
	}
	// Every delivery but the last was handed back at a checkpoint once its
	// slice was used up; how many there were depends on the machine's speed
	// (on this one, about a second of work per million rows).
	var requeued, deliveries int
	var durations []string
	for _, l := range ws[0].logLines("job attempt") {
		if l["job_id"] != id {
			continue
		}
		deliveries++
		d, _ := l["duration"].(float64)
		durations = append(durations, fmt.Sprintf("%.0fms", d))
		if l["outcome"] != "requeued" {
			continue
		}
		requeued++
		if e, _ := l["error"].(string); !strings.Contains(e, "run slice over") {
			t.Errorf("requeue log line without the run slice as its reason: %v", l)
		}
		if d < float64(slice.Milliseconds()) {
			t.Errorf("requeued after %vms, before its %v slice was over: %v", d, slice, l)
		}
	}
	t.Logf("report done in %v over %d deliveries (%d requeued at a run slice; durations %v); checkpoint seen advancing %d times",
		elapsed.Round(time.Millisecond), deliveries, requeued, durations, advances)
	if requeued < 1 || deliveries != requeued+1 {
		t.Errorf("%d deliveries of which %d requeued at a run slice; want requeues and one final delivery",
			deliveries, requeued)
	}
}
