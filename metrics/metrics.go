// Package metrics owns Offload's Prometheus metrics: counters of jobs by kind
// and queue through their lifecycle, latency histograms, HTTP request metrics,
// queue depth read from Redis at scrape time, and synchronous waits in flight.
// It observes; it never changes a job. The packages it observes declare the
// small interfaces it satisfies.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/offload-dev/offload/queue"
)

// Depths is what the queue-depth collector reads at scrape time.
type Depths interface {
	Names(ctx context.Context) ([]string, error)
	Stats(ctx context.Context, name string) (queue.Stats, error)
}

// Metrics holds the collectors of one process.
type Metrics struct {
	reg *prometheus.Registry

	enqueued  *prometheus.CounterVec
	handedOff *prometheus.CounterVec
	started   *prometheus.CounterVec
	finished  *prometheus.CounterVec
	// leasesExpired counts the expired leases maintenance reaped.
	leasesExpired *prometheus.CounterVec
	wait          *prometheus.HistogramVec
	duration      *prometheus.HistogramVec
	requests      *prometheus.CounterVec
	reqTime       *prometheus.HistogramVec
	syncWaits     prometheus.GaugeFunc
}

// New returns the metrics of a process. depths may be nil (no queue depth);
// waiting, if not nil, reports synchronous requests waiting now.
func New(depths Depths, waiting func() int) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "offload_jobs_enqueued_total", Help: "Jobs accepted by this API process.",
		}, []string{"kind", "queue"}),
		handedOff: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "offload_jobs_handed_off_total",
			Help: "Synchronous jobs this process stored already leased to its own idle worker slot (no fetch).",
		}, []string{"kind", "queue"}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "offload_jobs_started_total", Help: "Attempts started by this worker process.",
		}, []string{"kind", "queue"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "offload_jobs_finished_total",
			Help: "Attempts ended by this worker process, by outcome: succeeded, failed, retried, canceled, requeued, lost, unrecorded.",
		}, []string{"kind", "queue", "outcome"}),
		leasesExpired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "offload_leases_expired_total",
			Help: "Expired leases this process's queue maintenance reaped: attempts whose worker stopped heartbeating (a crash, a kill, a partition), requeued or ended.",
		}, []string{"queue"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "offload_job_start_delay_seconds",
			Help:    "Time from when a job became runnable (enqueue, run_at or retry time) to the start of its attempt.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"kind", "queue"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "offload_job_attempt_duration_seconds",
			Help:    "Duration of job attempts.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 1800},
		}, []string{"kind", "queue"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "offload_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		reqTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "offload_http_request_duration_seconds", Help: "HTTP request durations by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.enqueued, m.handedOff, m.started, m.finished, m.leasesExpired, m.wait, m.duration, m.requests, m.reqTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if waiting != nil {
		m.syncWaits = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "offload_sync_waits_in_flight", Help: "Synchronous requests (Expect, Prefer: wait) waiting now.",
		}, func() float64 { return float64(waiting()) })
		reg.MustRegister(m.syncWaits)
	}
	if depths != nil {
		reg.MustRegister(&depthCollector{src: depths, desc: prometheus.NewDesc("offload_queue_jobs",
			"Jobs per queue and state, read from Redis at scrape time.", []string{"queue", "state"}, nil),
			paused: prometheus.NewDesc("offload_queue_paused", "1 when the queue is paused.", []string{"queue"}, nil),
			up: prometheus.NewDesc("offload_redis_up",
				"1 when the queue gauges could be read from Redis at this scrape, 0 when not.", nil, nil)})
	}
	return m
}

// Handler serves the metrics in the Prometheus text format. A collector
// that fails does not fail the scrape: the process's own counters matter
// most during an outage of Redis (offload_redis_up says it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// Enqueued counts a job accepted by the API.
func (m *Metrics) Enqueued(kind, queue string) { m.enqueued.WithLabelValues(kind, queue).Inc() }

// HandedOff counts a synchronous job stored already leased to a worker slot
// of this process (queue.Handoff).
func (m *Metrics) HandedOff(kind, queue string) { m.handedOff.WithLabelValues(kind, queue).Inc() }

// Started counts an attempt that started after waiting delay.
func (m *Metrics) Started(kind, queue string, delay time.Duration) {
	m.started.WithLabelValues(kind, queue).Inc()
	if delay >= 0 {
		m.wait.WithLabelValues(kind, queue).Observe(delay.Seconds())
	}
}

// Finished counts an attempt that ended with outcome after d.
func (m *Metrics) Finished(kind, queue, outcome string, d time.Duration) {
	m.finished.WithLabelValues(kind, queue, outcome).Inc()
	m.duration.WithLabelValues(kind, queue).Observe(d.Seconds())
}

// LeasesExpired counts n expired leases of queue reaped by this process's
// queue maintenance (queue.Maintainer.OnReap).
func (m *Metrics) LeasesExpired(queue string, n int) {
	m.leasesExpired.WithLabelValues(queue).Add(float64(n))
}

// Middleware records HTTP requests by chi route pattern (never the raw path,
// which would make a series per job id) and by method, among the methods the
// API knows or "other" (a client may invent any number of methods).
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		route, method := routeLabel(r, status), methodLabel(r.Method)
		m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		m.reqTime.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	})
}

// methodLabel bounds the method label: the methods the API knows, or "other".
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return method
	}
	return "other"
}

// routeMethods are the methods a 405's path is looked up with, to find its
// route pattern.
var routeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodHead, http.MethodOptions}

// routeLabel is the route pattern r matched, "unmatched" for none. A 405
// matched no route with its method: its path is looked up with the others,
// so that it is labelled with the pattern of the resource it reached.
func routeLabel(r *http.Request, status int) string {
	rc := chi.RouteContext(r.Context())
	if rc == nil {
		return "unmatched"
	}
	if p := rc.RoutePattern(); p != "" {
		return p
	}
	if status == http.StatusMethodNotAllowed && rc.Routes != nil {
		path := r.URL.RawPath
		if path == "" {
			path = r.URL.Path
		}
		for _, method := range routeMethods {
			if p := rc.Routes.Find(chi.NewRouteContext(), method, path); p != "" {
				return p
			}
		}
	}
	return "unmatched"
}

// depthCollector reads queue depths from Redis when scraped.
type depthCollector struct {
	src              Depths
	desc, paused, up *prometheus.Desc
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- c.paused
	ch <- c.up
}

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Redis unreachable: no queue gauge (a stale or zero depth would
	// mislead), and offload_redis_up 0.
	names, err := c.src.Names(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	stats := make([]queue.Stats, 0, len(names))
	for _, n := range names {
		s, err := c.src.Stats(ctx, n)
		if err != nil {
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
			return
		}
		stats = append(stats, s)
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, s := range stats {
		n := s.Name
		for state, v := range s.Counts {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), n, state)
		}
		p := 0.0
		if s.Paused {
			p = 1
		}
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, p, n)
	}
}
