package handlers_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/handlers"
	"github.com/offload-dev/offload/internal/redistest"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
	"github.com/offload-dev/offload/workers"
)

func postWithKey(t *testing.T, url, key, body string) (*http.Response, []byte) {
	t.Helper()
	header := []string{"Content-Type", "application/json"}
	if key != "" {
		header = append(header, "Idempotency-Key", key)
	}
	return request(t, http.MethodPost, url+"/v1/jobs", body, header...)
}

func TestIdempotencyKey(t *testing.T) {
	e := setup(t)
	body := `{"kind":"sleep","args":{"ms":1}}`
	r1, b1 := postWithKey(t, e.srv.URL, "order-42", body)
	if r1.StatusCode != 202 || r1.Header.Get(handlersReplayed) != "" {
		t.Fatalf("first: %d %v %s", r1.StatusCode, r1.Header, b1)
	}
	// Same key, same meaning (other white space): the same job, marked replayed.
	r2, b2 := postWithKey(t, e.srv.URL, "order-42", `{ "args": {"ms": 1}, "kind": "sleep" }`)
	if r2.StatusCode != 202 || r2.Header.Get("Location") != r1.Header.Get("Location") || r2.Header.Get(handlersReplayed) != "true" {
		t.Fatalf("replay: %d %v %s", r2.StatusCode, r2.Header, b2)
	}
	// Same key, another body: 422 naming the header.
	r3, b3 := postWithKey(t, e.srv.URL, "order-42", `{"kind":"sleep","args":{"ms":2}}`)
	if r3.StatusCode != 422 || !bytes.Contains(b3, []byte(`"field":"Idempotency-Key"`)) {
		t.Fatalf("other body: %d %s", r3.StatusCode, b3)
	}
	// Another client (credentials) with the same key gets its own job.
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/jobs", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "order-42")
	req.Header.Set("Authorization", "Bearer other")
	r4, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r4.Body.Close()
	if r4.StatusCode != 202 || r4.Header.Get("Location") == r1.Header.Get("Location") {
		t.Fatalf("other client: %d %v", r4.StatusCode, r4.Header)
	}
	// A malformed key is a 400 naming the header.
	r5, b5 := postWithKey(t, e.srv.URL, "has space", body)
	if r5.StatusCode != 400 || !bytes.Contains(b5, []byte("Idempotency-Key")) {
		t.Fatalf("bad key: %d %s", r5.StatusCode, b5)
	}
	// A request refused before enqueue (unknown expectation) leaves the key free.
	req, _ = http.NewRequest("POST", e.srv.URL+"/v1/jobs", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "k2")
	req.Header.Set("Offload-Expect", "bogus")
	r6, _ := http.DefaultClient.Do(req)
	r6.Body.Close()
	if r6.StatusCode != 417 {
		t.Fatalf("bogus expectation: %d", r6.StatusCode)
	}
	if r7, b7 := postWithKey(t, e.srv.URL, "k2", body); r7.StatusCode != 202 || r7.Header.Get(handlersReplayed) != "" {
		t.Fatalf("key after a refused request: %d %s", r7.StatusCode, b7)
	}
}

const handlersReplayed = "Idempotent-Replayed"

// TestIdempotencyRace sends 50 concurrent requests with one key to a real
// redis-server: exactly one job is created, and every answer names it (or
// says the first is still being admitted).
func TestIdempotencyRace(t *testing.T) {
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	q := queue.New(rdb, queue.Options{})
	reg := workers.NewRegistry()
	if err := workers.RegisterBuiltins(reg); err != nil {
		t.Fatal(err)
	}
	h, err := handlers.New(handlers.Config{Logger: zerolog.Nop()}, q, statusstore.New(rdb), reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{}
	statuses := map[int]int{}
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := postWithKey(t, srv.URL, "race-1", `{"kind":"sleep","args":{}}`)
			mu.Lock()
			defer mu.Unlock()
			statuses[resp.StatusCode]++
			var p struct {
				ID    string `json:"id"`
				JobID string `json:"job_id"`
			}
			_ = json.Unmarshal(body, &p)
			ids[p.ID+p.JobID]++
		}()
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Fatalf("answers name %d jobs, want 1: %v", len(ids), ids)
	}
	if statuses[202]+statuses[409] != 50 || statuses[202] == 0 {
		t.Fatalf("statuses %v", statuses)
	}
	n, err := rdb.ZCard(t.Context(), queue.StateKey("default", "queued")).Result()
	if err != nil || n != 1 {
		t.Fatalf("jobs created: %d (%v), want 1", n, err)
	}
}
