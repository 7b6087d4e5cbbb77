package expectconn

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

const jobJSON = `{"queue":"default","type":"thumbnail","payload":{"url":"https://example.com/a.png"}}`

func postJob(expect string, body string) string {
	h := "POST /v1/jobs HTTP/1.1\r\nHost: api.example\r\nContent-Type: application/json\r\n"
	if expect != "" {
		h += "Expect: " + expect + "\r\n"
	}
	return h + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func TestExpectReachesHandler(t *testing.T) {
	addr := serve(t, &http.Server{}, true)
	for _, expect := range []string{"200-ok", "201-created", "204-no-content", "202-accepted", "frobnicate", "200-OK"} {
		c := dialRaw(t, addr)
		c.send(postJob(expect, jobJSON))
		code, body := c.response()
		want := echoLine("HTTP/1.1", "POST", "/v1/jobs", expect, []byte(jobJSON), "", false)
		if code != 200 || body != want {
			t.Errorf("Expect: %s: got %d %q, want 200 %q", expect, code, body, want)
		}
	}
}

// TestWithoutWrapper shows the problem the package solves.
func TestWithoutWrapper(t *testing.T) {
	addr := serve(t, &http.Server{}, false)
	c := dialRaw(t, addr)
	c.send(postJob("200-ok", jobJSON))
	if code, _ := c.response(); code != http.StatusExpectationFailed {
		t.Fatalf("got %d, want 417 from a bare net/http server", code)
	}
}

func TestContinue(t *testing.T) {
	addr := serve(t, &http.Server{}, true)
	for _, expect := range []string{"100-continue", "100-Continue, 200-ok"} {
		c := dialRaw(t, addr)
		// Headers only, announcing a body; the server must ask for it.
		head := postJob(expect, jobJSON)
		c.send(head[:len(head)-len(jobJSON)])
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := c.br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("Expect: %s: got %q, %v; want 100 Continue", expect, line, err)
		}
		if blank, _ := c.br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("after 100 Continue: %q", blank)
		}
		c.send(jobJSON)
		code, body := c.response()
		want := echoLine("HTTP/1.1", "POST", "/v1/jobs", expect, []byte(jobJSON), "", false)
		if code != 200 || body != want {
			t.Errorf("Expect: %s: got %d %q, want 200 %q", expect, code, body, want)
		}
	}
}

func TestKeepAlive(t *testing.T) {
	addr := serve(t, &http.Server{}, true)
	c := dialRaw(t, addr)
	for i, expect := range []string{"200-ok", "", "201-created", "100-continue", "202-accepted"} {
		body := fmt.Sprintf(`{"n":%d}`, i)
		if expect == "100-continue" {
			body = "" // nothing for the server to ask for
		}
		c.send(postJob(expect, body))
		code, got := c.response()
		want := echoLine("HTTP/1.1", "POST", "/v1/jobs", expect, []byte(body), "", false)
		if code != 200 || got != want {
			t.Errorf("request %d: got %d %q, want 200 %q", i, code, got, want)
		}
	}
}

// pipeline is five requests of all kinds, and what echo answers to each.
func pipeline() (string, []string) {
	chunked := "POST /v1/jobs HTTP/1.1\r\nHost: a\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n" +
		"Expect: 202-accepted\r\n\r\n" +
		"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: c0ffee\r\n\r\n"
	reqs := []string{
		postJob("200-ok", jobJSON),
		"GET /v1/jobs/1 HTTP/1.1\r\nHost: a\r\nExpect: 204-no-content\r\n\r\n",
		chunked,
		postJob("", jobJSON),
		"DELETE /v1/jobs/2 HTTP/1.1\r\nHost: a\r\nexpect: 201-created\r\nContent-Length: 0\r\n\r\n",
	}
	want := []string{
		echoLine("HTTP/1.1", "POST", "/v1/jobs", "200-ok", []byte(jobJSON), "", false),
		echoLine("HTTP/1.1", "GET", "/v1/jobs/1", "204-no-content", nil, "", false),
		echoLine("HTTP/1.1", "POST", "/v1/jobs", "202-accepted", []byte("hello, world"), "c0ffee", false),
		echoLine("HTTP/1.1", "POST", "/v1/jobs", "", []byte(jobJSON), "", false),
		echoLine("HTTP/1.1", "DELETE", "/v1/jobs/2", "201-created", nil, "", false),
	}
	return strings.Join(reqs, ""), want
}

func TestPipelined(t *testing.T) {
	addr := serve(t, &http.Server{}, true)
	stream, want := pipeline()
	c := dialRaw(t, addr)
	c.send(stream)
	for i, w := range want {
		if code, got := c.response(); code != 200 || got != w {
			t.Errorf("response %d: got %d %q, want 200 %q", i, code, got, w)
		}
	}
}

func TestChunkedTrailers(t *testing.T) {
	addr := serve(t, &http.Server{}, true)
	c := dialRaw(t, addr)
	c.send("POST /v1/jobs HTTP/1.1\r\nHost: a\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n" +
		"Expect: 202-accepted\r\n\r\n" +
		"1a;name=\"quoted; value\"\r\nabcdefghijklmnopqrstuvwxyz\r\n3 \r\n123\r\n0;last\r\nX-Checksum: 42\r\nX-Other: 1\r\n\r\n")
	want := echoLine("HTTP/1.1", "POST", "/v1/jobs", "202-accepted", []byte("abcdefghijklmnopqrstuvwxyz123"), "42", false)
	if code, got := c.response(); code != 200 || got != want {
		t.Fatalf("got %d %q, want 200 %q", code, got, want)
	}
	// The connection is still good for the next request.
	c.send(postJob("200-ok", jobJSON))
	want = echoLine("HTTP/1.1", "POST", "/v1/jobs", "200-ok", []byte(jobJSON), "", false)
	if code, got := c.response(); code != 200 || got != want {
		t.Fatalf("next request: got %d %q, want 200 %q", code, got, want)
	}
}

func TestOneByteWrites(t *testing.T) {
	addr := serve(t, &http.Server{}, true)
	stream, want := pipeline()
	c := dialRaw(t, addr)
	c.Conn.(*net.TCPConn).SetNoDelay(true)
	done := make(chan error, 1)
	go func() {
		for i := range len(stream) {
			if _, err := c.Conn.Write([]byte{stream[i]}); err != nil {
				done <- err
				return
			}
			if i%64 == 0 {
				time.Sleep(time.Millisecond) // let some reads see a single byte
			}
		}
		done <- nil
	}()
	for i, w := range want {
		if code, got := c.response(); code != 200 || got != w {
			t.Errorf("response %d: got %d %q, want 200 %q", i, code, got, w)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestGarbage(t *testing.T) {
	for _, garbage := range []string{
		"garbage\r\n\r\n",
		"GET / HTTP/1.1 extra\r\n",             // no blank line: net/http answers at once
		"GET /\x7f HTTP/1.1\r\n",               // bad target
		"GET / HTTP/1.1\r\nHost: a\r\nbad\r\n", // field without a colon
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
	} {
		answers := make([]string, 2)
		for i, wrap := range []bool{false, true} {
			addr := serve(t, &http.Server{}, wrap)
			c := dialRaw(t, addr)
			c.send(garbage)
			all, err := io.ReadAll(c.br)
			if err != nil {
				t.Fatalf("%q: %v", garbage, err)
			}
			answers[i] = string(all)
		}
		if !strings.HasPrefix(answers[1], "HTTP/1.1 4") && !strings.HasPrefix(answers[1], "HTTP/1.1 5") {
			t.Errorf("%q: got %q, want an error status", garbage, answers[1])
		}
		if answers[0] != answers[1] {
			t.Errorf("%q: wrapped server answered %q, bare one %q", garbage, answers[1], answers[0])
		}
	}
}

func TestH2C(t *testing.T) {
	srv := &http.Server{Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	addr := serve(t, srv, true)

	// HTTP/2 with prior knowledge ("h2c"), from net/http's own client.
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, expect := range []string{"200-ok", "202-accepted", ""} {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/jobs", strings.NewReader(jobJSON))
		if expect != "" {
			req.Header.Set("Expect", expect)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		want := echoLine("HTTP/2.0", "POST", "/v1/jobs", expect, []byte(jobJSON), "", false)
		if res.StatusCode != 200 || string(body) != want {
			t.Errorf("Expect: %s over h2c: got %d %q, want 200 %q", expect, res.StatusCode, body, want)
		}
	}
	// HTTP/1.1 still works on the same server.
	c := dialRaw(t, addr)
	c.send(postJob("200-ok", jobJSON))
	want := echoLine("HTTP/1.1", "POST", "/v1/jobs", "200-ok", []byte(jobJSON), "", false)
	if code, got := c.response(); code != 200 || got != want {
		t.Errorf("HTTP/1.1 beside h2c: got %d %q, want 200 %q", code, got, want)
	}
}

func TestFromRequest(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		want string
	}{
		{http.Header{}, ""},
		{http.Header{"Expect": {" 200-ok "}}, "200-ok"},
		// Several field lines are one list (RFC 9110 §5.3); the handler drops
		// the 100-continue that net/http answered.
		{http.Header{"Offload-Expect": {"202-accepted"}, "Expect": {"100-continue"}}, "202-accepted, 100-continue"},
		{http.Header{"Offload-Expect": {"201-created", "200-ok"}}, "201-created, 200-ok"},
		{http.Header{"Expect": {"200-ok", "204-no-content"}}, "200-ok, 204-no-content"},
	} {
		if got := FromRequest(&http.Request{Header: tc.h}); got != tc.want {
			t.Errorf("FromRequest(%v) = %q, want %q", tc.h, got, tc.want)
		}
	}
}
