package handlers

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	offload "github.com/offload-dev/offload"
	"github.com/offload-dev/offload/api"
)

// target serves the resources jobs create: GET /v1/{collection}/{id}.
func (a *service) target(collection string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		tg, err := a.status.Target(r.Context(), collection, chi.URLParam(r, "id"))
		if err != nil {
			return err
		}
		h := w.Header()
		h.Set("Cache-Control", "private, max-age="+strconv.Itoa(targetMaxAge(tg.Expires, a.q.Now())))
		if notModified(w, r, tg.Body) {
			return nil
		}
		h.Set("Content-Type", tg.ContentType)
		h.Set("Content-Length", strconv.Itoa(len(tg.Body)))
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(tg.Body)
		return nil
	}
}

// openAPI serves the embedded contract.
func (a *service) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(offload.OpenAPI)
}

// healthz answers while the process serves HTTP.
func (a *service) healthz(w http.ResponseWriter, _ *http.Request) {
	_ = writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

// readyz answers 200 when Redis answers, 503 otherwise.
func (a *service) readyz(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Ready == nil {
		_ = writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.cfg.Ready(ctx); err != nil {
		_ = writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "unavailable",
			Checks: map[string]string{"redis": err.Error()}})
		return
	}
	_ = writeJSON(w, http.StatusOK, api.Health{Status: "ok", Checks: map[string]string{"redis": "ok"}})
}

// targetMaxAgeCap bounds how long a client may keep a created resource
// without asking again.
const targetMaxAgeCap = time.Hour

// targetMaxAge is the max-age, in seconds, of a created resource that
// expires at expires (zero: unknown): the resource never changes, but a
// cached copy must not outlive it (the server answers 410 after).
func targetMaxAge(expires, now time.Time) int {
	age := targetMaxAgeCap
	if !expires.IsZero() {
		age = min(age, expires.Sub(now))
	}
	return max(0, int(age/time.Second))
}
