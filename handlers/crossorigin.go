package handlers

import (
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/rs/zerolog"

	"github.com/offload-dev/offload/api"
)

// CrossOrigin returns middleware that refuses cross-origin browser requests
// to unsafe methods (POST, PUT, PATCH, DELETE) with a 403 problem, through
// net/http's CrossOriginProtection: a request whose Sec-Fetch-Site is not
// same-origin, or, without that header, whose Origin does not match Host, is
// refused unless its origin is one of trusted ("scheme://host[:port]").
// Clients that are not browsers send neither header and pass, as do safe
// methods. New puts it in front of the /v1 routes; a router that calls Mount
// should add it too.
func CrossOrigin(log zerolog.Logger, trusted ...string) (func(http.Handler) http.Handler, error) {
	cop := http.NewCrossOriginProtection()
	for _, o := range trusted {
		if err := cop.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("trusted origin: %w", err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Warn().Str("request_id", middleware.GetReqID(r.Context())).Str("method", r.Method).
			Str("path", r.URL.Path).Str("origin", r.Header.Get("Origin")).
			Str("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")).Msg("cross-origin request refused")
		p := api.NewProblem(api.TypeCrossOrigin, http.StatusForbidden, "Cross-origin request refused",
			"a browser sent this request from a page of another origin; this server answers POST and DELETE "+
				"from its own pages and from clients that are not browsers")
		p.Instance = r.URL.Path
		api.WriteProblem(w, p)
	}))
	return cop.Handler, nil
}
