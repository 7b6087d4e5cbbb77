package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
)

// setup serves a dashboard over a fresh fake source, with the clock at
// fakeNow. The server's URL is its only origin.
func setup(t *testing.T) (*httptest.Server, *fakeSource, *bytes.Buffer) {
	t.Helper()
	src := newFakeSource()
	var logs bytes.Buffer
	d, err := New(src, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	d.now = func() time.Time { return fakeNow }
	r := chi.NewRouter()
	d.Routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, src, &logs
}

// get fetches path and returns the response and its body.
func get(t *testing.T, srv *httptest.Server, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	return do(t, srv, http.MethodGet, path, hdr...)
}

func do(t *testing.T, srv *httptest.Server, method, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// The default transport would gunzip behind our back.
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// htmx is the header set of a same-origin htmx request from a browser.
var htmx = []string{"HX-Request", "true", "Sec-Fetch-Site", "same-origin"}

func contains(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("body lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("body:\n%s", body)
	}
}

func wantStatus(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want)
	}
}

func TestOverview(t *testing.T) {
	t.Parallel()
	srv, _, _ := setup(t)
	resp, body := get(t, srv, "/")
	wantStatus(t, resp, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") ||
		strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy = %q, want script-src 'self' and nothing unsafe", csp)
	}
	contains(t, body,
		// queues, their counts, pause state and throughput chart
		`data-queue="default"`, `data-queue="emails"`, ">1234<", ">58<", `class="badge warn">paused`,
		`hx-post="/ui/queues/default/pause"`, `hx-post="/ui/queues/emails/resume"`, "hx-confirm=",
		"<svg", `class="chart"`, "<strong>160</strong> succeeded", "15:08: 22 succeeded, 0 failed",
		`href="/ui/jobs?queue=default&amp;state=failed"`,
		// workers, one of them stale
		"worker-1.internal", "pid 4242", "3/8", "2s ago", "worker-2.internal", `class="badge bad">stale`,
		// the latest jobs, with a link to the whole list
		`href="/ui/jobs/default.01JQ0000000000000000000060"`, `<span class="badge run">running</span>`,
		`href="/ui/jobs">All jobs`,
		// live updates
		`hx-get="/ui/partials/queues" hx-trigger="every 2s"`, `hx-get="/ui/partials/workers"`,
		`hx-get="/ui/partials/jobs?compact=1&amp;limit=10"`,
	)
	if n := strings.Count(body, "<tr data-job="); n != overviewJobs {
		t.Errorf("overview lists %d jobs, want %d", n, overviewJobs)
	}
}

func TestPartials(t *testing.T) {
	t.Parallel()
	srv, _, _ := setup(t)
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"queues", "/ui/partials/queues", []string{`<section id="queues"`, `data-queue="default"`, "<svg"}},
		{"workers", "/ui/partials/workers", []string{`<section id="workers"`, "worker-1.internal"}},
		{"jobs", "/ui/partials/jobs?state=failed", []string{`<section id="jobs"`, `badge bad">failed`,
			`hx-get="/ui/partials/jobs?state=failed"`}},
		{"job", "/ui/partials/jobs/default.01JQ0000000000000000000060", []string{`<section id="job"`,
			`hx-get="/ui/partials/jobs/default.01JQ0000000000000000000060" hx-trigger="every 2s"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, srv, tc.path, "HX-Request", "true")
			wantStatus(t, resp, http.StatusOK)
			contains(t, body, tc.want...)
			if strings.Contains(body, "<html") {
				t.Error("a partial holds a whole page")
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", resp.Header.Get("Cache-Control"))
			}
		})
	}
}

func TestJobList(t *testing.T) {
	t.Parallel()
	srv, src, _ := setup(t)
	resp, body := get(t, srv, "/ui/jobs?state=succeeded&queue=default&kind=sleep")
	wantStatus(t, resp, http.StatusOK)
	filters, _ := src.recorded()
	want := JobFilter{State: "succeeded", Queue: "default", Kind: "sleep", Limit: jobsPageSize}
	if !slices.Contains(filters, want) {
		t.Fatalf("source was asked %+v, want %+v", filters, want)
	}
	contains(t, body, `<option selected>succeeded</option>`, `<option selected>default</option>`,
		`<option>emails</option>`, `name="kind" value="sleep"`, `href="/ui/jobs">Clear</a>`)
	if strings.Contains(body, `badge bad">failed`) {
		t.Error("the filtered list shows a failed job")
	}

	// Cursor pagination: page 1 of 60 jobs has a next link keeping the filter.
	_, body = get(t, srv, "/ui/jobs?queue=default")
	next := regexp.MustCompile(`<a href="([^"]+)" rel="next">Next page`).FindStringSubmatch(body)
	if next == nil {
		t.Fatalf("no next page link:\n%s", body)
	}
	link := strings.ReplaceAll(next[1], "&amp;", "&")
	if !strings.Contains(link, "queue=default") || !strings.Contains(link, "cursor=") {
		t.Fatalf("next link %q loses the filter or has no cursor", link)
	}
	_, page2 := get(t, srv, link)
	contains(t, page2, `href="/ui/jobs?queue=default">← Newest</a>`)
	first := regexp.MustCompile(`data-job="([^"]+)"`).FindAllStringSubmatch(body, -1)
	second := regexp.MustCompile(`data-job="([^"]+)"`).FindAllStringSubmatch(page2, -1)
	if len(first) != jobsPageSize || len(second) == 0 {
		t.Fatalf("pages hold %d and %d jobs", len(first), len(second))
	}
	for _, m := range second {
		if strings.Contains(body, `data-job="`+m[1]+`"`) {
			t.Errorf("job %s is on both pages", m[1])
		}
	}

	// A bad cursor is the source's 400, shown in the page.
	resp, body = get(t, srv, "/ui/jobs?cursor=zzz")
	wantStatus(t, resp, http.StatusBadRequest)
	contains(t, body, "Invalid cursor")
}

func TestJobPage(t *testing.T) {
	t.Parallel()
	srv, _, _ := setup(t)

	// A failed job: error, attempts, retry but no cancel.
	resp, body := get(t, srv, "/ui/jobs/default.01JQ0000000000000000000058")
	wantStatus(t, resp, http.StatusOK)
	contains(t, body, "<h1>report", `badge bad">failed`, "upstream answered 503 three times",
		"upstream answered 503 Service Unavailable", "3 of 3", ">Created<", ">Started<", ">Finished<", ">Updated<",
		`href="/v1/jobs/default.01JQ0000000000000000000058">Status resource`,
		`hx-post="/ui/jobs/default.01JQ0000000000000000000058/retry"`, "hx-confirm=",
		`&#34;ms&#34;: 1500`)
	if strings.Contains(body, "/cancel\"") {
		t.Error("a failed job offers cancel")
	}

	// A running job: progress and cancel.
	_, body = get(t, srv, "/ui/jobs/default.01JQ0000000000000000000060")
	contains(t, body, `<progress max="100" value="42">`, "resized 42 of 100 images",
		`hx-post="/ui/jobs/default.01JQ0000000000000000000060/cancel"`)

	// A job that created a target links to it; its timeline has an expiry.
	_, body = get(t, srv, "/ui/jobs/default.01JQ0000000000000000000059")
	contains(t, body, `href="/v1/images/default.01JQ0000000000000000000059">Target`, ">Expires<")

	// A succeeded job without target shows its result.
	_, body = get(t, srv, "/ui/jobs/default.01JQ0000000000000000000054")
	contains(t, body, ">Result<", "&#34;slept_ms&#34;: 1500")

	// Unknown job: the source's 404, and the fragment stops polling.
	resp, body = get(t, srv, "/ui/jobs/default.01JQ9999999999999999999999")
	wantStatus(t, resp, http.StatusNotFound)
	contains(t, body, "Not found", "no job default.01JQ9999999999999999999999")
	_, body = get(t, srv, "/ui/partials/jobs/default.01JQ9999999999999999999999")
	if strings.Contains(body, "hx-trigger") {
		t.Error("the fragment of a missing job keeps polling")
	}
}

func TestActions(t *testing.T) {
	t.Parallel()
	srv, src, _ := setup(t)
	for _, tc := range []struct {
		name, path string
		status     int
		action     string
		want       []string
	}{
		{"pause", "/ui/queues/default/pause", 200, "pause default",
			[]string{"Queue default paused.", `hx-post="/ui/queues/default/resume"`}},
		{"resume", "/ui/queues/emails/resume", 200, "resume emails",
			[]string{"Queue emails resumed.", `hx-post="/ui/queues/emails/pause"`}},
		{"pause unknown queue", "/ui/queues/nope/pause", 404, "pause nope",
			[]string{"Could not pause queue nope: no queue nope", `<section id="queues"`}},
		{"cancel running", "/ui/jobs/default.01JQ0000000000000000000060/cancel", 200,
			"cancel default.01JQ0000000000000000000060", []string{"Cancel requested", `badge warn">canceling`}},
		{"cancel queued", "/ui/jobs/default.01JQ0000000000000000000057/cancel", 200,
			"cancel default.01JQ0000000000000000000057", []string{"Job canceled.", `badge mute">canceled`,
				`/ui/jobs/default.01JQ0000000000000000000057/retry`}},
		{"cancel finished", "/ui/jobs/default.01JQ0000000000000000000059/cancel", 409,
			"cancel default.01JQ0000000000000000000059", []string{"Could not cancel: a finished job cannot be canceled",
				`badge ok">succeeded`}},
		{"retry failed", "/ui/jobs/default.01JQ0000000000000000000058/retry", 200,
			"retry default.01JQ0000000000000000000058", []string{"Job queued again", `badge wait">queued`}},
		{"retry running", "/ui/jobs/default.01JQ0000000000000000000055/retry", 409,
			"retry default.01JQ0000000000000000000055", []string{"Could not retry: Job cannot be retried"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, srv, http.MethodPost, tc.path, htmx...)
			wantStatus(t, resp, tc.status)
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("Content-Type = %q, want an HTML fragment", resp.Header.Get("Content-Type"))
			}
			contains(t, body, tc.want...)
			if _, actions := src.recorded(); !slices.Contains(actions, tc.action) {
				t.Errorf("source actions %q lack %q", actions, tc.action)
			}
		})
	}
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	srv, src, logs := setup(t)
	const path = "/ui/jobs/default.01JQ0000000000000000000060/cancel"
	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		// What a cross-site <form method=post> sends from a current browser.
		{"cross-site form", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example",
			"Content-Type", "application/x-www-form-urlencoded"}},
		// The same from a browser that sends no Fetch metadata.
		{"cross-site form, old browser", []string{"Origin", "https://evil.example"}},
		// A form with no Origin at all (privacy settings): no HX-Request.
		{"plain post", nil},
		// A same-site but other-origin page that managed to add the header.
		{"same-site other origin", []string{"HX-Request", "true", "Sec-Fetch-Site", "same-site",
			"Origin", "https://other.localhost"}},
		{"cross-site with header", []string{"HX-Request", "true", "Sec-Fetch-Site", "cross-site"}},
		{"origin mismatch with header", []string{"HX-Request", "true", "Origin", "http://evil.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, srv, http.MethodPost, path, tc.hdr...)
			wantStatus(t, resp, http.StatusForbidden)
			if !strings.HasPrefix(body, "403 forbidden") {
				t.Errorf("body = %q", body)
			}
		})
	}
	if _, actions := src.recorded(); len(actions) != 0 {
		t.Fatalf("rejected requests reached the source: %q", actions)
	}
	if !strings.Contains(logs.String(), "dashboard action refused") {
		t.Error("refusals are not logged")
	}
	// The same request from the page itself passes, with or without Fetch
	// metadata (an Origin matching Host).
	resp, _ := do(t, srv, http.MethodPost, path, htmx...)
	wantStatus(t, resp, http.StatusOK)
	resp, _ = do(t, srv, http.MethodPost, "/ui/queues/default/pause", "HX-Request", "true", "Origin", srv.URL)
	wantStatus(t, resp, http.StatusOK)
	// GET never changes anything.
	resp, _ = get(t, srv, path)
	wantStatus(t, resp, http.StatusMethodNotAllowed)
}

func TestSourceFailure(t *testing.T) {
	t.Parallel()
	srv, src, logs := setup(t)
	src.err = errStoreDown
	for _, path := range []string{"/", "/ui/partials/queues", "/ui/partials/workers", "/ui/partials/jobs",
		"/ui/jobs", "/ui/jobs/default.01JQ0000000000000000000060"} {
		resp, body := get(t, srv, path)
		if path != "/" { // the overview is a page of panels, each with its own error
			wantStatus(t, resp, http.StatusInternalServerError)
		}
		contains(t, body, `class="fail" role="alert"`, "Internal error", "the error has been logged")
		if strings.Contains(body, "10.0.0.7") {
			t.Errorf("%s leaks the internal error to the page", path)
		}
	}
	// The polled fragments keep polling, so the page heals itself.
	_, body := get(t, srv, "/ui/partials/queues")
	contains(t, body, `hx-trigger="every 2s"`)
	if !strings.Contains(logs.String(), "connection refused") {
		t.Error("the source error is not logged")
	}
}

func TestStaticAssets(t *testing.T) {
	t.Parallel()
	srv, _, _ := setup(t)
	d, _ := New(newFakeSource(), zerolog.Nop())
	for _, tc := range []struct{ name, ctype string }{
		{"app.css", "text/css; charset=utf-8"},
		{"app.js", "text/javascript; charset=utf-8"},
		{"docs.js", "text/javascript; charset=utf-8"},
		{"docs.css", "text/css; charset=utf-8"},
		{"favicon.svg", "image/svg+xml"},
		{"vendor/htmx.min.js", "text/javascript; charset=utf-8"},
		{"vendor/swagger-ui-bundle.js", "text/javascript; charset=utf-8"},
		{"vendor/swagger-ui.css", "text/css; charset=utf-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := staticFS.ReadFile("static/" + tc.name)
			if err != nil {
				t.Fatal(err)
			}
			versioned := d.static.url(tc.name)
			resp, body := get(t, srv, versioned)
			wantStatus(t, resp, http.StatusOK)
			h := resp.Header
			if h.Get("Content-Type") != tc.ctype || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("Content-Type = %q, X-Content-Type-Options = %q", h.Get("Content-Type"), h.Get("X-Content-Type-Options"))
			}
			if h.Get("Cache-Control") != "public, max-age=31536000, immutable" {
				t.Errorf("versioned URL: Cache-Control = %q", h.Get("Cache-Control"))
			}
			if body != string(want) {
				t.Error("body differs from the embedded file")
			}
			etag := h.Get("ETag")
			resp, body = get(t, srv, versioned, "If-None-Match", etag)
			wantStatus(t, resp, http.StatusNotModified)
			if body != "" {
				t.Error("304 with a body")
			}

			// Unversioned: revalidate every time.
			resp, _ = get(t, srv, "/static/"+tc.name)
			if resp.Header.Get("Cache-Control") != "no-cache" {
				t.Errorf("unversioned URL: Cache-Control = %q", resp.Header.Get("Cache-Control"))
			}
			resp, _ = get(t, srv, "/static/"+tc.name+"?v=stale")
			if resp.Header.Get("Cache-Control") != "no-cache" {
				t.Errorf("stale version: Cache-Control = %q", resp.Header.Get("Cache-Control"))
			}

			// gzip for those who ask.
			resp, body = get(t, srv, versioned, "Accept-Encoding", "br, gzip")
			if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
				t.Fatalf("Content-Encoding = %q, Vary = %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
			}
			if resp.Header.Get("ETag") == etag {
				t.Error("the gzip variant has the identity's ETag")
			}
			zr, err := gzip.NewReader(strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, want) {
				t.Error("gunzipped body differs from the embedded file")
			}
			resp, _ = get(t, srv, versioned, "Accept-Encoding", "gzip;q=0")
			if resp.Header.Get("Content-Encoding") != "" {
				t.Error("gzip sent to a client that refused it")
			}

			resp, body = do(t, srv, http.MethodHead, versioned)
			wantStatus(t, resp, http.StatusOK)
			if body != "" || resp.ContentLength != int64(len(want)) {
				t.Errorf("HEAD: body %d bytes, Content-Length %d", len(body), resp.ContentLength)
			}
		})
	}
	resp, _ := get(t, srv, "/static/nope.js")
	wantStatus(t, resp, http.StatusNotFound)
	resp, _ = get(t, srv, "/static/../web.go")
	if resp.StatusCode == http.StatusOK {
		t.Error("path traversal served a file")
	}
}

// noInlineScript fails if page has a script element with content or an
// inline event handler: the CSP would block them.
func noInlineScript(t *testing.T, page, body string) {
	t.Helper()
	if m := regexp.MustCompile(`<script(\s[^>]*)?>[^<]+</script>`).FindString(body); m != "" {
		t.Errorf("%s has an inline script: %s", page, m)
	}
	if m := regexp.MustCompile(`<script(\s[^>]*)?>`).FindAllString(body, -1); len(m) == 0 && page != "/docs" {
		t.Errorf("%s loads no script", page)
	} else {
		for _, tag := range m {
			if !strings.Contains(tag, ` src="/static/`) {
				t.Errorf("%s: script %s is not one of our static files", page, tag)
			}
		}
	}
	if m := regexp.MustCompile(`\son[a-z]+\s*=`).FindString(body); m != "" {
		t.Errorf("%s has an inline event handler: %s", page, m)
	}
}

// urlRE finds absolute URLs. The SVG namespace is an identifier that no
// browser fetches, so it is the one allowed.
var urlRE = regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'<>)]*`)

func foreignURLs(s string) []string {
	var out []string
	for _, u := range urlRE.FindAllString(s, -1) {
		if u != "http://www.w3.org/2000/svg" {
			out = append(out, u)
		}
	}
	return out
}

func TestDocs(t *testing.T) {
	t.Parallel()
	srv, _, _ := setup(t)
	resp, body := get(t, srv, "/docs")
	wantStatus(t, resp, http.StatusOK)
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	noInlineScript(t, "/docs", body)
	contains(t, body, `<div id="swagger-ui"`, "vendor/swagger-ui-bundle.js", "vendor/swagger-ui.css", "/static/docs.js")
	if strings.Contains(body, "htmx") {
		t.Error("/docs loads htmx")
	}
	// Every asset the page references is same-origin and served.
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(body, -1)
	for _, m := range refs {
		u := strings.ReplaceAll(m[1], "&amp;", "&")
		if !strings.HasPrefix(u, "/") || strings.HasPrefix(u, "//") {
			t.Errorf("/docs references %q, which is not a same-origin path", u)
			continue
		}
		if strings.HasPrefix(u, "/static/") {
			if resp, _ := get(t, srv, u); resp.StatusCode != http.StatusOK {
				t.Errorf("%s: status %d", u, resp.StatusCode)
			}
		}
	}
	_, js := get(t, srv, "/static/docs.js")
	contains(t, js, `url: "/openapi.yaml"`, "validatorUrl: null")
}

// TestNoForeignURLs checks every file we wrote (templates, our static files)
// and every rendered page: nothing names another host. The vendored files are
// third-party code and are not ours to check here; the CSP covers them.
func TestNoForeignURLs(t *testing.T) {
	t.Parallel()
	srv, _, _ := setup(t)
	for _, root := range []fs.FS{templateFS, staticFS} {
		err := fs.WalkDir(root, ".", func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || strings.Contains(p, "/vendor/") {
				return err
			}
			b, err := fs.ReadFile(root, p)
			if err != nil {
				return err
			}
			if u := foreignURLs(string(b)); len(u) > 0 {
				t.Errorf("%s names other hosts: %q", p, u)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"/", "/docs", "/ui/jobs", "/ui/jobs/default.01JQ0000000000000000000059"} {
		_, body := get(t, srv, p)
		if u := foreignURLs(body); len(u) > 0 {
			t.Errorf("page %s names other hosts: %q", p, u)
		}
		noInlineScript(t, p, body)
	}
}

// TestVendored checks that static/vendor is what `npm run vendor` makes from
// the versions pinned in package.json and package-lock.json: a changed pin
// without a refreshed copy, or an edited copy, fails here.
func TestVendored(t *testing.T) {
	t.Parallel()
	var pkg struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	var manifest struct {
		Packages map[string]string `json:"packages"`
		Files    map[string]string `json:"files"`
	}
	for file, v := range map[string]any{"package.json": &pkg, "package-lock.json": &lock,
		"static/vendor/VERSIONS.json": &manifest} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if len(pkg.DevDependencies) != 2 {
		t.Errorf("package.json pins %v, want swagger-ui-dist and htmx.org", pkg.DevDependencies)
	}
	for name, pin := range pkg.DevDependencies {
		if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(pin) {
			t.Errorf("%s is pinned to %q, not an exact version", name, pin)
		}
		if got := lock.Packages["node_modules/"+name].Version; got != pin {
			t.Errorf("%s: package-lock.json has %q, package.json pins %q", name, got, pin)
		}
		if got := manifest.Packages[name]; got != pin {
			t.Errorf("%s: static/vendor holds %q, package.json pins %q: run npm ci && npm run vendor", name, got, pin)
		}
	}
	entries, err := fs.ReadDir(staticFS, "static/vendor")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(manifest.Files)+1 {
		t.Errorf("static/vendor holds %d files, VERSIONS.json lists %d", len(entries), len(manifest.Files))
	}
	for name, want := range manifest.Files {
		b, err := staticFS.ReadFile("static/vendor/" + name)
		if err != nil {
			t.Errorf("vendored %s: %v", name, err)
			continue
		}
		sum := sha256.Sum256(b)
		if got := "sha256-" + base64.StdEncoding.EncodeToString(sum[:]); got != want {
			t.Errorf("static/vendor/%s was edited by hand (%s, want %s)", name, got, want)
		}
	}
}

func TestThroughputChart(t *testing.T) {
	t.Parallel()
	at := func(m int) time.Time { return fakeNow.Truncate(time.Minute).Add(time.Duration(m) * time.Minute) }
	for _, tc := range []struct {
		name            string
		tp              []api.Throughput
		ok, bad, peak   int
		tallest, padded int // the index of a full-height bar; how many empty slots lead
	}{
		{name: "empty", tallest: -1, padded: chartMinutes},
		{name: "idle", tp: []api.Throughput{{At: at(0)}}, tallest: -1, padded: chartMinutes - 1},
		{name: "two minutes", tp: []api.Throughput{{At: at(-1), Succeeded: 4, Failed: 1}, {At: at(0), Succeeded: 10}},
			ok: 14, bad: 1, peak: 10, tallest: 14, padded: 13},
		{name: "too many keeps the newest", tp: func() []api.Throughput {
			var tp []api.Throughput
			for i := range 20 {
				tp = append(tp, api.Throughput{At: at(i - 19), Succeeded: 100 - i})
			}
			return tp
		}(), ok: 1320, peak: 95, tallest: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := throughputChart(tc.tp)
			if len(c.Bars) != chartMinutes {
				t.Fatalf("%d bars", len(c.Bars))
			}
			if c.Succeeded != tc.ok || c.Failed != tc.bad || c.Peak != tc.peak {
				t.Errorf("totals %d/%d peak %d, want %d/%d peak %d", c.Succeeded, c.Failed, c.Peak, tc.ok, tc.bad, tc.peak)
			}
			for i, b := range c.Bars {
				if i < tc.padded && (b.HasOk || b.HasBad || b.Title != "no data") {
					t.Errorf("bar %d should be padding: %+v", i, b)
				}
				if h := b.OkH + b.BadH; h < 0 || h > float64(c.H) || b.BadY < 0 {
					t.Errorf("bar %d leaves the chart: %+v", i, b)
				}
				if i > 0 && b.X <= c.Bars[i-1].X {
					t.Errorf("bar %d is not right of bar %d", i, i-1)
				}
			}
			if tc.tallest >= 0 {
				if b := c.Bars[tc.tallest]; b.OkH+b.BadH != float64(c.H-1) {
					t.Errorf("the peak bar is %v high, want %d", b.OkH+b.BadH, c.H-1)
				}
			}
		})
	}
}

func TestAgo(t *testing.T) {
	t.Parallel()
	d := &Dashboard{now: func() time.Time { return fakeNow }}
	for _, tc := range []struct {
		name string
		at   time.Time
		want string
	}{
		{"zero", time.Time{}, "—"},
		{"now", fakeNow.Add(-300 * time.Millisecond), "just now"},
		{"seconds", fakeNow.Add(-42 * time.Second), "42s ago"},
		{"minutes", fakeNow.Add(-5*time.Minute - 10*time.Second), "5m ago"},
		{"hours", fakeNow.Add(-26 * time.Hour), "26h ago"},
		{"days", fakeNow.Add(-72 * time.Hour), "3d ago"},
		{"future", fakeNow.Add(90 * time.Second), "in 1m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := d.ago(tc.at); got != tc.want {
				t.Errorf("ago = %q, want %q", got, tc.want)
			}
		})
	}
}
