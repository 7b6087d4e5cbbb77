package web

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
)

// csrf guards the dashboard's POST actions against cross-site request
// forgery, without tokens or cookies (the dashboard has no session):
//
//  1. net/http's CrossOriginProtection rejects any request whose
//     Sec-Fetch-Site header (sent by every current browser) says it is not
//     same-origin, or, without that header, whose Origin does not match
//     Host;
//  2. the request must carry "HX-Request: true", which htmx sets. A
//     cross-site page can only send such a header through fetch with CORS,
//     whose preflight this server never grants, and an HTML form cannot send
//     it at all; so an older browser that sends neither Sec-Fetch-Site nor
//     Origin is still covered.
//
// Anything rejected gets a plain-text 403. A non-browser client (curl) can
// pass both checks, as it can call the JSON API: CSRF protects browsers.
func csrf(log zerolog.Logger) func(http.Handler) http.Handler {
	deny := func(w http.ResponseWriter, r *http.Request, why string) {
		log.Warn().Str("request_id", middleware.GetReqID(r.Context())).Str("path", r.URL.Path).
			Str("origin", r.Header.Get("Origin")).Str("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")).
			Str("reason", why).Msg("dashboard action refused")
		http.Error(w, "403 forbidden: "+why, http.StatusForbidden)
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deny(w, r, "cross-origin request")
	}))
	return func(next http.Handler) http.Handler {
		return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("HX-Request") != "true" {
				deny(w, r, "dashboard actions must be sent by the dashboard page (no HX-Request header)")
				return
			}
			next.ServeHTTP(w, r)
		}))
	}
}

// setPaused handles POST /ui/queues/{name}/pause and /resume. It answers the
// queues fragment, with the outcome as a flash.
func (d *Dashboard) setPaused(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		verb, done := "pause", "paused"
		if !paused {
			verb, done = "resume", "resumed"
		}
		st, fl := http.StatusOK, &flash{Tone: "ok", Text: "Queue " + name + " " + done + "."}
		if err := d.src.SetPaused(r.Context(), name, paused); err != nil {
			f := d.fail(r, verb+" queue "+name, err)
			st, fl = f.Status, &flash{Tone: "bad", Text: "Could not " + verb + " queue " + name + ": " + f.Detail}
		}
		v := d.queues(r)
		v.Flash = fl
		if st == http.StatusOK {
			st = status(v.Fail)
		}
		d.render(w, r, st, "overview", "queues", v)
	}
}

// cancel handles POST /ui/jobs/{id}/cancel. It answers the job fragment.
func (d *Dashboard) cancel(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	err := d.src.Cancel(r.Context(), id)
	v := d.job(r, id)
	st := status(v.Fail)
	switch {
	case err != nil:
		f := d.fail(r, "cancel job "+id, err)
		st, v.Flash = f.Status, &flash{Tone: "bad", Text: "Could not cancel: " + f.Detail}
	case v.Job.State == api.StateCanceling:
		v.Flash = &flash{Tone: "ok", Text: "Cancel requested: the running attempt is being stopped."}
	default:
		v.Flash = &flash{Tone: "ok", Text: "Job canceled."}
	}
	d.render(w, r, st, "overview", "job", v)
}

// retry handles POST /ui/jobs/{id}/retry. It answers the job fragment.
func (d *Dashboard) retry(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	err := d.src.Retry(r.Context(), id)
	v := d.job(r, id)
	st := status(v.Fail)
	if err != nil {
		f := d.fail(r, "retry job "+id, err)
		st, v.Flash = f.Status, &flash{Tone: "bad", Text: "Could not retry: " + f.Detail}
	} else {
		v.Flash = &flash{Tone: "ok", Text: "Job queued again with a fresh attempt budget."}
	}
	d.render(w, r, st, "overview", "job", v)
}
