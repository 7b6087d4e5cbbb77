//go:build browser

package tests

// The browser test drives Debian's chromium (headless, through chromedp)
// against the real server binary and a real redis-server, on a desktop and a
// phone viewport:
//
//   - /docs: expand POST /v1/jobs, "Try it out", submit a sleep job and see
//     the 202 in the response panel;
//   - the dashboard: a job submitted over HTTP appears and reaches
//     "succeeded" by the page's own live updates, without a reload;
//   - a job page: cancel a long job, accept the confirm dialog, see
//     canceling/canceled;
//   - the job list filtered by state; pausing and resuming a queue;
//
// and fails on any Content Security Policy violation or uncaught script
// error. Every step leaves a PNG in tests/artifacts/ (gitignored).
//
// Run it with: go test -tags browser -run Browser ./tests/
// CHROMIUM overrides the browser's path (default /usr/bin/chromium).

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/offload-dev/offload/api"
)

const (
	// uiTimeout bounds waiting for one thing to appear on a page; the
	// dashboard polls every 2s.
	uiTimeout = 60 * time.Second
)

// viewport is a screen the pages must work on.
type viewport struct {
	name          string
	width, height int64
	mobile        bool
}

var viewports = []viewport{
	{name: "desktop", width: 1280, height: 800},
	{name: "phone", width: 390, height: 844, mobile: true},
}

func TestBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	artifacts, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatalf("artifacts dir: %v", err)
	}
	s := startServer(t, map[string]string{"CONCURRENCY": "4"})
	for _, vp := range viewports {
		t.Run(vp.name, func(t *testing.T) {
			b := newBrowser(t, chrome, vp, artifacts)
			t.Run("docs try it out", func(t *testing.T) { b.docsTryItOut(t, s) })
			t.Run("dashboard live update", func(t *testing.T) { b.dashboardLive(t, s) })
			t.Run("cancel from job page", func(t *testing.T) { b.cancelFromJobPage(t, s) })
			t.Run("job list", func(t *testing.T) { b.jobList(t, s) })
			t.Run("pause and resume", func(t *testing.T) { b.pauseResume(t, s) })
			b.checkConsole(t)
		})
	}
}

// chromiumPath returns the browser to drive. A missing browser fails the
// test: it must never pass by not running.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		if lp, lerr := exec.LookPath("chromium"); lerr == nil && os.Getenv("CHROMIUM") == "" {
			return lp
		}
		t.Fatalf("the browser tests need chromium, and %s is missing (%v): install it with "+
			"`apt-get install -y chromium`, or set CHROMIUM to its path", p, err)
	}
	return p
}

// browser is one headless chromium with one tab, at one viewport.
type browser struct {
	ctx       context.Context
	vp        viewport
	artifacts string

	mu       sync.Mutex
	problems []string // CSP violations, script errors
}

func newBrowser(t *testing.T, chrome string, vp viewport, artifacts string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.WindowSize(int(vp.width), int(vp.height)),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first action starts the browser, whose life is that of ctx: it must
	// have no timeout of its own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chrome, err)
	}
	b := &browser{ctx: ctx, vp: vp, artifacts: artifacts}

	// The dashboard asks for confirmation before an action: accept.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			t.Logf("%s: accepting dialog %q", vp.name, ev.Message)
			if _, err := chromedp.Call(ctx, page.HandleJavaScriptDialog,
				page.HandleJavaScriptDialogParams{Accept: true}); err != nil && ctx.Err() == nil {
				b.problem("accepting dialog %q: %v", ev.Message, err)
			}
		}
	}()
	// Any CSP violation or uncaught error fails the test.
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			switch {
			case m.IsException():
				b.problem("uncaught script error: %s (%s:%d)", m.Text, m.URL, m.Line)
			case m.Type == chromedp.ConsoleError && (m.Source == "security" ||
				strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Refused to")):
				b.problem("CSP: %s (%s)", m.Text, m.URL)
			case m.Type == chromedp.ConsoleError:
				t.Logf("%s: console error: %s (%s)", vp.name, m.Text, m.URL)
			}
		}
	}()

	emulate := chromedp.EmulateViewport(vp.width, vp.height)
	if vp.mobile {
		emulate = chromedp.EmulateViewport(vp.width, vp.height, chromedp.EmulateScale(2),
			chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait)
	}
	b.do(t, "emulate the viewport", emulate)
	return b
}

func (b *browser) problem(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

// checkConsole fails the test on any CSP violation or script error seen.
func (b *browser) checkConsole(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		t.Errorf("%s: %s", b.vp.name, p)
	}
}

// do runs steps, failing the test with what was being done and a screenshot.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
	defer cancel()
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > 2*time.Second {
			t.Logf("%s: %s took %v", b.vp.name, what, d.Round(time.Millisecond))
		}
	}()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.view(t, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s (%s): %v", what, b.vp.name, err)
	}
}

// click clicks the first element matching the CSS selector sel. The
// dashboard swaps its fragments every 2s, so the node found can be replaced
// before the click reaches it: the browser then reports an unknown node,
// before any mouse event was sent, and the click is tried again on the new
// node.
func (b *browser) click(t *testing.T, what, sel string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
		err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
		cancel()
		if err == nil {
			return
		}
		if attempt < 5 && strings.Contains(strings.ToLower(err.Error()), "node with given id") {
			t.Logf("%s: %s: the node was replaced (%v); clicking again", b.vp.name, what, err)
			continue
		}
		b.view(t, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s (%s): %v", what, b.vp.name, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, b *browser, what, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s (%s): %v", what, b.vp.name, err)
	}
	return v
}

// shot saves a full-page PNG as artifacts/{viewport}-{name}.png.
func (b *browser) shot(t *testing.T, name string) { b.capture(t, name, chromedp.FullScreenshot(100)) }

// view saves a PNG of what the viewport shows (the docs page is too long for
// a full-page capture to be useful, or fast).
func (b *browser) view(t *testing.T, name string) { b.capture(t, name, chromedp.CaptureScreenshot()) }

func (b *browser) capture(t *testing.T, name string, how chromedp.Action[[]byte]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
	defer cancel()
	start := time.Now()
	png, err := chromedp.Run(ctx, how)
	if d := time.Since(start); d > 2*time.Second {
		t.Logf("%s: screenshot %s took %v", b.vp.name, name, d.Round(time.Millisecond))
	}
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.artifacts, b.vp.name+"-"+name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot %s", p)
}

// waitText waits until the first element matching the CSS selector sel has
// a text content (trimmed) that satisfies ok, and returns it. The dashboard
// replaces its fragments every 2s, so the element is looked up afresh on
// each try.
func (b *browser) waitText(t *testing.T, what, sel string, ok func(string) bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
	defer cancel()
	expr := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent.trim() : null; })()`, sel)
	var last *string
	for {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[*string](expr))
		if err == nil {
			last = v
			if v != nil && ok(*v) {
				return *v
			}
		}
		select {
		case <-ctx.Done():
			b.view(t, "failed-"+strings.ReplaceAll(what, " ", "-"))
			text := "no such element"
			if last != nil {
				text = fmt.Sprintf("text %q", *last)
			}
			t.Fatalf("%s (%s): %s: %s after %v", what, b.vp.name, sel, text, uiTimeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func is(want ...string) func(string) bool {
	return func(s string) bool { return slices.Contains(want, s) }
}

func nonEmpty(s string) bool { return s != "" }

// docsTryItOut submits a job from Swagger UI on /docs.
func (b *browser) docsTryItOut(t *testing.T, s *Server) {
	const op = "#operations-jobs-submitJob"
	b.do(t, "open /docs",
		chromedp.Navigate(s.URL+"/docs"),
		chromedp.WaitVisible(chromedp.CSS(op+" .opblock-summary")),
	)
	b.view(t, "docs")
	b.do(t, "expand POST /v1/jobs",
		chromedp.Click(chromedp.CSS(op+" .opblock-summary-control")),
		chromedp.WaitVisible(chromedp.CSS(op+" .try-out__btn")),
		chromedp.Click(chromedp.CSS(op+" .try-out__btn")),
		chromedp.WaitVisible(chromedp.CSS(op+" textarea.body-param__text")),
	)
	// Swagger UI fills each parameter with its first example, and those of
	// Expect and Prefer ask for a synchronous answer: empty them, as a user
	// who wants the default 202 would. Swagger UI is a React app: values are
	// set through the native setter and an input event, as typing would.
	const setValue = `(sel, v) => {
		const el = document.querySelector(sel);
		if (!el) return null;
		const proto = el.tagName === "TEXTAREA" ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
		Object.getOwnPropertyDescriptor(proto, "value").set.call(el, v);
		el.dispatchEvent(new Event("input", {bubbles: true}));
		el.dispatchEvent(new Event("change", {bubbles: true}));
		return el.value;
	}`
	for _, h := range []string{"Expect", "Prefer"} {
		sel := fmt.Sprintf(`%s tr[data-param-name=%q] input`, op, h)
		if got := eval[*string](t, b, "clear "+h, fmt.Sprintf(`(%s)(%q, "")`, setValue, sel)); got == nil || *got != "" {
			t.Fatalf("could not clear the %s parameter (%s)", h, sel)
		}
	}
	const body = `{"kind": "sleep", "args": {"ms": 200, "result": {"from": "swagger-ui"}}}`
	if got := eval[string](t, b, "enter the job body",
		fmt.Sprintf(`(%s)(%q, %q)`, setValue, op+" textarea.body-param__text", body)); got != body {
		t.Fatalf("the body editor holds %q", got)
	}
	b.do(t, "scroll to the body", chromedp.ScrollIntoView(chromedp.CSS(op+" textarea.body-param__text")))
	b.view(t, "docs-try-it-out")
	b.do(t, "execute", chromedp.Click(chromedp.CSS(op+" .execute")))
	status := b.waitText(t, "see the response", op+" .live-responses-table tr.response .response-col_status", nonEmpty)
	if status != "202" {
		b.view(t, "docs-response")
		curl := eval[string](t, b, "read the curl command",
			`(document.querySelector("`+op+` .curl-command") || {textContent: ""}).textContent`)
		t.Fatalf("Swagger UI's response panel shows status %q, want 202; it sent: %s", status, curl)
	}
	// The panel shows the status document of the new job.
	panel := b.waitText(t, "read the response body", op+" .live-responses-table tr.response .response-col_description", nonEmpty)
	if !strings.Contains(panel, `"kind": "sleep"`) || !strings.Contains(panel, "/v1/jobs/") {
		t.Errorf("the response panel does not show the status document: %q", panel)
	}
	b.do(t, "scroll to the response", chromedp.ScrollIntoView(chromedp.CSS(op+" .live-responses-table")))
	b.view(t, "docs-202")
}

// dashboardLive watches a job submitted over HTTP go to succeeded on the
// overview, by the page's own polling.
func (b *browser) dashboardLive(t *testing.T, s *Server) {
	b.do(t, "open the dashboard",
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#queues")),
		// A marker that a reload would wipe.
		chromedp.Evaluate[chromedp.Void](`window.__offloadNoReload = true`),
	)
	// Long enough for a poll or two to show it queued or running first.
	job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 4000}})
	row := fmt.Sprintf(`#jobs tr[data-job=%q] .badge`, job.ID)
	state := b.waitText(t, "see the new job appear", row, nonEmpty)
	b.shot(t, "dashboard-job-appears")
	t.Logf("%s: job %s appeared as %s", b.vp.name, job.ID, state)
	b.waitText(t, "see the job succeed", row, is(api.StateSucceeded))
	if !eval[bool](t, b, "check no reload happened", `window.__offloadNoReload === true`) {
		t.Fatal("the dashboard reloaded the page to show the update")
	}
	b.waitText(t, "see the worker", "#workers tbody tr", nonEmpty)
	b.shot(t, "dashboard-succeeded")
}

// cancelFromJobPage cancels a running job with the job page's button.
func (b *browser) cancelFromJobPage(t *testing.T, s *Server) {
	job := s.submit(t, map[string]any{"kind": "sleep", "args": map[string]any{"ms": 60000}})
	s.waitState(t, job.ID, api.StateRunning, jobTimeout)
	const badge = "#job .job-head .badge"
	b.do(t, "open the job page", chromedp.Navigate(s.URL+"/ui/jobs/"+job.ID))
	b.waitText(t, "see it running", badge, is(api.StateRunning))
	b.shot(t, "job-running")
	b.click(t, "cancel", `#job button[hx-post$="/cancel"]`)
	// The answer to the action carries its outcome; the next poll drops it.
	flash := b.waitText(t, "see the outcome", "#job .flash", nonEmpty)
	if !strings.Contains(flash, "Cancel requested") && !strings.Contains(flash, "Job canceled") {
		t.Errorf("after cancel the job page says %q", flash)
	}
	state := b.waitText(t, "see canceling", badge, is(api.StateCanceling, api.StateCanceled))
	t.Logf("%s: job %s is %s after the cancel", b.vp.name, job.ID, state)
	b.shot(t, "job-after-cancel")
	b.waitText(t, "see canceled", badge, is(api.StateCanceled))
	b.do(t, "see retry offered", chromedp.WaitVisible(chromedp.CSS(`#job button[hx-post$="/retry"]`)))
	b.shot(t, "job-canceled")
	// The API agrees.
	if got := s.waitState(t, job.ID, api.StateCanceled, jobTimeout); got.Error == nil {
		t.Errorf("canceled job %s has no error document", job.ID)
	}
}

// jobList opens the job list filtered on succeeded jobs.
func (b *browser) jobList(t *testing.T, s *Server) {
	b.do(t, "open the job list",
		chromedp.Navigate(s.URL+"/ui/jobs?state=succeeded"),
		chromedp.WaitVisible(chromedp.CSS("#jobs table")),
	)
	states := eval[[]string](t, b, "read the states",
		`[...document.querySelectorAll("#jobs tr[data-job] .badge")].map(e => e.textContent)`)
	if len(states) == 0 {
		t.Error("the job list filtered on succeeded shows no job")
	}
	for _, st := range states {
		if st != api.StateSucceeded {
			t.Errorf("the list filtered on succeeded shows a %s job", st)
		}
	}
	b.shot(t, "jobs")
	resp, err := http.Get(s.URL + "/ui/jobs")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("the dashboard's Content-Security-Policy is %q", csp)
	}
}

// pauseResume pauses the default queue from its card and resumes it.
func (b *browser) pauseResume(t *testing.T, s *Server) {
	const card = `#queues article[data-queue="default"]`
	b.do(t, "open the dashboard", chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible(chromedp.CSS(card)))
	b.click(t, "pause", card+` button[hx-post$="/pause"]`)
	b.waitText(t, "see it paused", card+" header .badge", is("paused"))
	b.waitText(t, "see the outcome", "#queues .flash", is("Queue default paused."))
	q := decode[api.Queue](t, s.get(t, "/v1/queues/default"))
	if !q.Paused {
		t.Error("the API says the queue is not paused")
	}
	b.shot(t, "dashboard-paused")
	b.click(t, "resume", card+` button[hx-post$="/resume"]`)
	b.waitText(t, "see it active", card+" header .badge", is("active"))
	if q := decode[api.Queue](t, s.get(t, "/v1/queues/default")); q.Paused {
		t.Error("the API says the queue is still paused")
	}
}
