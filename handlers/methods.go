package handlers

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/offload-dev/offload/api"
)

// methods are the methods a route may serve, in the order Allow lists them.
var methods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

// allowed returns the methods the path of r is served with, HEAD included
// wherever GET is (middleware.GetHead answers it).
func allowed(r *http.Request) []string {
	rctx := chi.RouteContext(r.Context())
	if rctx == nil || rctx.Routes == nil {
		return nil
	}
	path := rctx.RoutePath
	if path == "" {
		path = r.URL.RawPath
		if path == "" {
			path = r.URL.Path
		}
	}
	var allow []string
	get := false
	for _, m := range methods {
		ok := rctx.Routes.Match(chi.NewRouteContext(), m, path)
		if m == http.MethodGet {
			get = ok
		}
		if ok || (m == http.MethodHead && get) {
			allow = append(allow, m)
		}
	}
	return allow
}

// methodNotAllowed answers a path served with other methods than r's: 405,
// with Allow (RFC 9110 §15.5.6) and a detail naming those methods. chi also
// sends here a method it does not know, whatever the path: a path no route
// serves answers 404, as it does to any known method.
func methodNotAllowed(w http.ResponseWriter, r *http.Request) error {
	methods := allowed(r)
	if len(methods) == 0 {
		return notFound()
	}
	allow := strings.Join(methods, ", ")
	w.Header().Set("Allow", allow)
	return api.NewProblem(api.TypeMethod, http.StatusMethodNotAllowed, "Method not allowed",
		"this resource answers "+allow+" only")
}

// notFound is the problem of a path no route serves.
func notFound() error {
	return api.NewProblem(api.TypeNotFound, http.StatusNotFound, "Not found", "no such resource")
}
