package expectconn

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
)

// benchBody is a job submission of about 300 bytes.
var benchBody = func() []byte {
	b := `{"queue":"default","type":"thumbnail","priority":5,"max_attempts":3,` +
		`"payload":{"url":"https://images.example.com/uploads/2024/06/a1b2c3d4e5f6.png",` +
		`"width":320,"height":240,"format":"webp","quality":82},` +
		`"idempotency_key":"01HZX3J6Q8M2N4P5R7S9T1V3W5","callback":"https://hooks.example.com/jobs/done"}`
	if len(b) < 280 || len(b) > 320 {
		panic(fmt.Sprint("benchBody is ", len(b), " bytes"))
	}
	return []byte(b)
}()

// pipelinedPosts is n POST /v1/jobs requests back to back, with an Expect
// field if expect is set.
func pipelinedPosts(n int, expect string) []byte {
	var b bytes.Buffer
	for i := range n {
		b.WriteString("POST /v1/jobs HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: offload-client/1.4\r\n" +
			"Content-Type: application/json\r\nAccept: application/json\r\nAuthorization: Bearer tok_3f9a8b7c6d5e4f\r\n")
		if expect != "" {
			b.WriteString("Expect: " + expect + "\r\n")
		}
		fmt.Fprintf(&b, "X-Request-Id: req-%06d\r\nContent-Length: %d\r\n\r\n", i, len(benchBody))
		b.Write(benchBody)
	}
	return b.Bytes()
}

// BenchmarkConnRead reads 1,000 pipelined requests from memory, as
// net/http's bufio.Reader would (4096-byte reads), straight and through the
// wrapper.
func BenchmarkConnRead(b *testing.B) {
	for _, bc := range []struct {
		name    string
		wrap    bool
		expect  string
		renames int // per request
	}{
		{"raw", false, "", 0},
		{"wrapped", true, "", 0},
		{"wrapped-expect", true, "200-ok", 1},
	} {
		stream := pipelinedPosts(1000, bc.expect)
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			buf := make([]byte, 4096)
			src := &chunkConn{}
			var total int
			for b.Loop() {
				src.data = stream
				var c net.Conn = src
				if bc.wrap {
					c = NewConn(src)
				}
				for {
					n, err := c.Read(buf)
					total += n
					if err != nil {
						break
					}
				}
			}
			if want := len(stream) + 1000*grown*bc.renames; total%want != 0 {
				b.Fatalf("read %d bytes in all, want multiples of %d", total, want)
			}
		})
	}
}

// BenchmarkServe posts job submissions over loopback to an http.Server, one
// keep-alive connection, with and without the wrapper.
func BenchmarkServe(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"01HZX3J6Q8M2N4P5R7S9T1V3W5","bytes":`+strconv.FormatInt(n, 10)+`,"expect":"`+FromRequest(r)+`"}`)
	})
	for _, bc := range []struct {
		name   string
		wrap   bool
		expect string
	}{
		{"plain", false, ""},
		{"expectconn", true, ""},
		{"expectconn-expect", true, "202-accepted"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			addr := serve(b, &http.Server{Handler: handler}, bc.wrap)
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := "http://" + addr + "/v1/jobs"
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("POST", url, bytes.NewReader(benchBody))
				req.Header.Set("Content-Type", "application/json")
				if bc.expect != "" {
					req.Header.Set("Expect", bc.expect)
				}
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusAccepted {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
		})
	}
}
