package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/offload-dev/offload/api"
)

//go:embed templates
var templateFS embed.FS

// Content Security Policies of the pages. Nothing is loaded from another
// origin and no inline script runs. Swagger UI sets style attributes, so the
// docs page allows inline styles; the dashboard does not need them.
const (
	dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; form-action 'self'; " +
		"base-uri 'none'; frame-ancestors 'none'"
)

// pageHeaders sets the security headers of an HTML page or fragment.
func pageHeaders(csp string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "same-origin")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Cache-Control", "no-store")
			next.ServeHTTP(w, r)
		})
	}
}

// pageNames are the templates under templates/ that are whole pages: each
// defines "content" (and may redefine "head") for layout.html, which with the
// part_*.html fragments is shared by all of them.
var pageNames = []string{"overview", "jobs", "job", "docs"}

// parseTemplates parses each page together with the layout and partials.
func (d *Dashboard) parseTemplates() (map[string]*template.Template, error) {
	base, err := template.New("").Funcs(d.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/part_*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if pages[name], err = t.ParseFS(templateFS, "templates/"+name+".html"); err != nil {
			return nil, err
		}
	}
	return pages, nil
}

func (d *Dashboard) funcs() template.FuncMap {
	return template.FuncMap{
		"asset":     d.static.url,
		"ago":       d.ago,
		"stamp":     stamp,
		"iso":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"stateTone": stateTone,
		"pct":       func(f float64) string { return fmt.Sprintf("%.0f%%", math.Round(f)) },
		"join":      strings.Join,
	}
}

// render writes template name of page with status. Pages render into a
// buffer first so that a template error becomes a clean 500.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, page, name string, data any) {
	var b bytes.Buffer
	if err := d.pages[page].ExecuteTemplate(&b, name, data); err != nil {
		d.log.Error().Err(err).Str("template", page+"/"+name).Str("request_id", middleware.GetReqID(r.Context())).
			Msg("dashboard template failed")
		http.Error(w, "500 internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// failure is what a page shows of a Source error.
type failure struct {
	Status  int
	Title   string
	Detail  string
	Missing bool // the job does not exist (any more)
}

// fail turns err into a failure, logging errors that are not problems.
func (d *Dashboard) fail(r *http.Request, what string, err error) *failure {
	var p *api.Problem
	if errors.As(err, &p) && p.Status > 0 && p.Status < 500 {
		f := &failure{Status: p.Status, Title: p.Title, Detail: p.Detail,
			Missing: p.Status == http.StatusNotFound || p.Status == http.StatusGone}
		if f.Detail == "" {
			f.Detail = f.Title
		}
		return f
	}
	d.log.Error().Err(err).Str("request_id", middleware.GetReqID(r.Context())).Str("op", what).
		Msg("dashboard source failed")
	f := &failure{Status: http.StatusInternalServerError, Title: "Internal error",
		Detail: "the dashboard could not " + what + "; the error has been logged"}
	if p != nil {
		f.Status, f.Title = p.Status, p.Title
		if p.Detail != "" {
			f.Detail = p.Detail
		}
	}
	return f
}

// status is the HTTP status of a view that may hold a failure.
func status(f *failure) int {
	if f == nil {
		return http.StatusOK
	}
	return f.Status
}

// ago says how long ago (or in how long) t is, coarsely.
func (d *Dashboard) ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	dt := d.now().Sub(t)
	future := dt < 0
	if future {
		dt = -dt
	}
	var s string
	switch {
	case dt < time.Second:
		return "just now"
	case dt < time.Minute:
		s = fmt.Sprintf("%ds", int(dt/time.Second))
	case dt < time.Hour:
		s = fmt.Sprintf("%dm", int(dt/time.Minute))
	case dt < 48*time.Hour:
		s = fmt.Sprintf("%dh", int(dt/time.Hour))
	default:
		s = fmt.Sprintf("%dd", int(dt/(24*time.Hour)))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// stamp is an absolute time for a title attribute.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 MST")
}

// stateTone is the CSS class of a job state's badge.
func stateTone(state string) string {
	switch state {
	case api.StateSucceeded:
		return "ok"
	case api.StateFailed:
		return "bad"
	case api.StateRunning:
		return "run"
	case api.StateRetrying, api.StateCanceling:
		return "warn"
	case api.StateCanceled:
		return "mute"
	default:
		return "wait"
	}
}

// pretty indents raw JSON for display; it returns raw as is if it is not JSON.
func pretty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}
