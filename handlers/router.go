// Package handlers owns Offload's HTTP surface: the chi router, its
// middleware, and the handlers for jobs, queues, the resources jobs create,
// the OpenAPI document and health. It turns errors into problem documents
// through one table. It does not store or run jobs: it reaches package queue
// and statusstore, and the job-kind registry through the Catalog interface.
package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
	"github.com/offload-dev/offload/queue"
	"github.com/offload-dev/offload/statusstore"
	"github.com/offload-dev/offload/web"
)

// Catalog is what the API needs of the job-kind registry.
type Catalog interface {
	Lookup(kind string) (api.KindInfo, bool)
	// ValidateValue checks a kind's arguments, decoded into a generic JSON
	// value (as api.ValidatedBody and encoding/json leave them).
	ValidateValue(kind string, args any) []api.FieldError
	// DecodeArgs checks that arguments that passed the kind's schema decode
	// into its handler's type, and returns the arguments to store.
	DecodeArgs(kind string, args json.RawMessage) (json.RawMessage, []api.FieldError)
}

// Metrics is what the API needs of the metrics of its process.
type Metrics interface {
	Enqueued(kind, queue string)
	// HandedOff counts a job stored already leased to a local worker slot.
	HandedOff(kind, queue string)
	Middleware(next http.Handler) http.Handler
	Handler() http.Handler
}

// Config configures the API.
type Config struct {
	// BodyLimit bounds request bodies in bytes (default 1 MiB).
	BodyLimit int64
	// Logger receives one line per request.
	Logger zerolog.Logger
	// Spec is the loaded OpenAPI document (default: api.LoadSpec()).
	Spec *openapi3.T
	// Ready reports whether the service can take work (Redis reachable).
	Ready func(ctx context.Context) error
	// Waiter delivers job completions to synchronous requests (Expect,
	// Prefer: wait). It must be running (Waiter.Run, then Ready). Nil answers
	// every request asynchronously, and Expect: 200-ok with 417.
	Waiter *statusstore.Waiter
	// SyncWaitMax bounds how long a synchronous request waits (default 30s).
	SyncWaitMax time.Duration
	// Metrics records requests and enqueued jobs and serves /metrics; nil
	// for none.
	Metrics Metrics
	// IdempotencyTTL is how long an Idempotency-Key is remembered after its
	// job was accepted (default 24h).
	IdempotencyTTL time.Duration
	// TrustedOrigins are origins ("https://ui.example.com") whose browser
	// pages may send the API's POST and DELETE; other cross-origin browser
	// requests are refused (CrossOrigin). Default none: same-origin pages and
	// clients that are not browsers only.
	TrustedOrigins []string
	// SyncMaxBacklog is how many runnable jobs per live worker slot may wait
	// ahead of a synchronous job before it is refused with 417 (default 10).
	SyncMaxBacklog int
	// NoDashboard leaves out the dashboard (/, /ui/...), its static files
	// and the docs page (/docs), for programs that serve their own pages.
	NoDashboard bool
	// Handoff, when this process also runs workers (ROLE=all), reserves a
	// free worker slot for a job of the named queue: a synchronous job of
	// an idle queue is then stored already leased to this process
	// (queue.Handoff) and run at once, without a round trip through the
	// queue. run starts the reserved slot on the delivery; release gives the
	// slot back unused. ok is false when no slot is free or the pool does
	// not drain the queue. Nil: every job goes through the queue.
	Handoff func(queue string) (run func(*queue.Delivery), release func(), ok bool)
}

// service holds the dependencies of the handlers.
type service struct {
	cfg     Config
	q       *queue.Queue
	status  *statusstore.Store
	catalog Catalog
	log     zerolog.Logger

	capacity capacity
}

// New returns the HTTP handler of the service: the /v1 API, /openapi.yaml,
// /healthz, /readyz, /metrics (with cfg.Metrics) and the dashboard (unless
// cfg.NoDashboard). It must be served at the root of its host: the links it
// answers with (Location, the status document's links) are absolute paths
// from "/". Serve it through expectconn's listener, or net/http answers
// Expect: 200-ok with 417 before the handler runs.
func New(cfg Config, q *queue.Queue, st *statusstore.Store, cat Catalog) (http.Handler, error) {
	if cfg.BodyLimit <= 0 {
		cfg.BodyLimit = 1 << 20
	}
	if cfg.SyncWaitMax <= 0 {
		cfg.SyncWaitMax = 30 * time.Second
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	if cfg.SyncMaxBacklog <= 0 {
		cfg.SyncMaxBacklog = 10
	}
	if cfg.Spec == nil {
		spec, err := api.LoadSpec()
		if err != nil {
			return nil, err
		}
		cfg.Spec = spec
	}
	val, err := api.NewValidator(cfg.Spec, cfg.BodyLimit)
	if err != nil {
		return nil, err
	}
	crossOrigin, err := CrossOrigin(cfg.Logger, cfg.TrustedOrigins...)
	if err != nil {
		return nil, err
	}
	a := &service{cfg: cfg, q: q, status: st, catalog: cat, log: cfg.Logger}
	r := chi.NewRouter()
	// GetHead answers HEAD on every GET route with the GET handler (net/http
	// drops the body), as RFC 9110 §9.1 asks of a general-purpose server.
	r.Use(requestID, a.requestLog, recoverer(cfg.Logger), middleware.GetHead)
	if cfg.Metrics != nil {
		r.Use(cfg.Metrics.Middleware)
		r.Method(http.MethodGet, "/metrics", cfg.Metrics.Handler())
	}
	r.NotFound(handle(a.log, func(http.ResponseWriter, *http.Request) error { return notFound() }))
	r.MethodNotAllowed(handle(a.log, methodNotAllowed))
	// Cross-origin browser requests are refused before the body is read.
	a.mount(r.With(crossOrigin, val.Middleware))
	r.Get("/openapi.yaml", a.openAPI)
	a.health(r)
	if cfg.NoDashboard {
		return r, nil
	}
	// The dashboard and the docs page answer people, outside the OpenAPI
	// validator; they read the same queue and status store in-process.
	dash, err := web.New(dashboard{a}, cfg.Logger)
	if err != nil {
		return nil, err
	}
	dash.Routes(r)
	return r, nil
}

// Ops returns the handler of a process that serves no API (ROLE=worker):
// /healthz, /readyz and, with cfg.Metrics, /metrics.
func Ops(cfg Config) http.Handler {
	a := &service{cfg: cfg, log: cfg.Logger}
	r := chi.NewRouter()
	r.Use(requestID, recoverer(cfg.Logger), middleware.GetHead)
	r.MethodNotAllowed(handle(a.log, methodNotAllowed))
	if cfg.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", cfg.Metrics.Handler())
	}
	a.health(r)
	return r
}

// health adds /healthz and /readyz. Their HEAD routes are explicit (and
// documented as operations), as load balancers probe with HEAD; GetHead
// would answer them anyway.
func (a *service) health(r chi.Router) {
	r.Get("/healthz", a.healthz)
	r.Head("/healthz", a.healthz)
	r.Get("/readyz", a.readyz)
	r.Head("/readyz", a.readyz)
}

// mount adds the /v1 routes to r.
func (a *service) mount(r chi.Router) {
	h := func(fn handlerFunc) http.HandlerFunc { return handle(a.log, fn) }
	r.Post("/v1/jobs", h(a.submit))
	r.Get("/v1/jobs", h(a.list))
	r.Get("/v1/jobs/{id}", h(a.get))
	r.Delete("/v1/jobs/{id}", h(a.cancel))
	r.Post("/v1/jobs/{id}/retry", h(a.retry))
	r.Get("/v1/queues", h(a.queues))
	r.Get("/v1/queues/{name}", h(a.queue))
	r.Post("/v1/queues/{name}/pause", h(a.pause(true)))
	r.Post("/v1/queues/{name}/resume", h(a.pause(false)))
	r.Get("/v1/workers", h(a.workers))
	for _, c := range api.TargetCollections {
		r.Get("/v1/"+c+"/{id}", h(a.target(c)))
	}
}

// requestLog writes one structured line per request and echoes the request id.
func (a *service) requestLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := middleware.GetReqID(r.Context())
		w.Header().Set("X-Request-Id", id)
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		a.log.Info().Str("request_id", id).Str("method", r.Method).Str("path", r.URL.Path).
			Int("status", ww.Status()).Int("bytes", ww.BytesWritten()).
			Dur("duration", time.Since(start)).Str("job_id", ww.Header().Get("X-Job-Id")).Msg("request")
	})
}

// recoverer turns a panicking handler into a logged 500 problem.
func recoverer(log zerolog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.Error().Interface("panic", v).Str("request_id", middleware.GetReqID(r.Context())).
						Msg("handler panicked")
					api.WriteProblem(w, api.NewProblem(api.TypeInternal, http.StatusInternalServerError,
						"Internal error", "an unexpected error occurred; it has been logged"))
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// writeJSON writes v as JSON with status. It always returns nil.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// Once the status is sent, an encoding or write error cannot become a
	// problem document: the client sees a cut body.
	_ = json.NewEncoder(w).Encode(v)
	return nil
}
