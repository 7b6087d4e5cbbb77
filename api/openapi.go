package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	offload "github.com/offload-dev/offload"
)

// LoadSpec parses and validates the embedded openapi.yaml.
func LoadSpec() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(offload.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate openapi.yaml: %w", err)
	}
	return doc, nil
}

// Validator enforces the OpenAPI document on requests.
type Validator struct {
	router    routers.Router
	static    map[string]*routers.Route // "METHOD /path" of paths without parameters
	bodyLimit int64
}

// NewValidator returns a Validator for doc that also bounds request bodies to
// bodyLimit bytes.
func NewValidator(doc *openapi3.T, bodyLimit int64) (*Validator, error) {
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi router: %w", err)
	}
	v := &Validator{router: r, static: map[string]*routers.Route{}, bodyLimit: bodyLimit}
	// Paths without parameters are found by one map lookup instead of the
	// router's regular expressions: the hot path, POST /v1/jobs, is one.
	for path, item := range doc.Paths.Map() {
		if strings.Contains(path, "{") {
			continue
		}
		for method, op := range item.Operations() {
			v.static[method+" "+path] = &routers.Route{
				Spec: doc, Path: path, PathItem: item, Method: method, Operation: op,
			}
		}
	}
	return v, nil
}

// findRoute returns the operation r targets. A HEAD the document does not
// list is checked as its GET, which answers it (chi's middleware.GetHead).
func (v *Validator) findRoute(r *http.Request) (*routers.Route, map[string]string, error) {
	if route, ok := v.static[r.Method+" "+r.URL.Path]; ok {
		return route, nil, nil
	}
	route, params, err := v.router.FindRoute(r)
	if err != nil && r.Method == http.MethodHead {
		get := r.Clone(r.Context())
		get.Method = http.MethodGet
		return v.findRoute(get)
	}
	return route, params, err
}

// ValidatedBody returns the JSON body of r as the validator decoded and
// checked it (json.Number for numbers), and whether there is one: a handler
// behind the validator need not decode it into a generic value again.
func ValidatedBody(r *http.Request) (any, bool) {
	vb, ok := r.Body.(interface{ ValidatedValue() any })
	if !ok {
		return nil, false
	}
	return vb.ValidatedValue(), true
}

// Middleware checks each request against the operation it targets: a body
// over the limit answers 413, a wrong media type 415, malformed JSON or a bad
// parameter 400, a body that fails the schema 422 — each a problem document
// naming the field. Requests to paths the document does not describe pass
// through untouched (the router answers them).
func (v *Validator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, params, err := v.findRoute(r)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		if p := v.check(w, r, route, params); p != nil {
			p.Instance = r.URL.Path
			WriteProblem(w, p)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (v *Validator) check(w http.ResponseWriter, r *http.Request, route *routers.Route, params map[string]string) *Problem {
	if rb := route.Operation.RequestBody; rb != nil && rb.Value != nil {
		if ce := strings.TrimSpace(r.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
			w.Header().Set("Accept-Encoding", "identity")
			p := NewProblem(TypeMediaType, http.StatusUnsupportedMediaType, "Unsupported content coding",
				fmt.Sprintf("Content-Encoding %q is not accepted; send the body as it is", ce))
			p.Errors = []FieldError{{Field: "Content-Encoding", Message: "must be absent or identity"}}
			return p
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, v.bodyLimit))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return NewProblem(TypeTooLarge, http.StatusRequestEntityTooLarge, "Request body too large",
					fmt.Sprintf("the body exceeds the limit of %d bytes", v.bodyLimit))
			}
			return NewProblem(TypeMalformed, http.StatusBadRequest, "Unreadable request body", err.Error())
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if len(body) > 0 || rb.Value.Required {
			mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			// JSON is UTF-8 (RFC 8259 §8.1): a body declared in another
			// charset would be read as what it is not.
			cs, hasCharset := params["charset"]
			if err != nil || rb.Value.Content.Get(mt) == nil || hasCharset && !strings.EqualFold(cs, "utf-8") {
				p := NewProblem(TypeMediaType, http.StatusUnsupportedMediaType, "Unsupported media type",
					fmt.Sprintf("Content-Type %q is not accepted; send application/json", r.Header.Get("Content-Type")))
				p.Errors = []FieldError{{Field: "Content-Type", Message: "must be application/json"}}
				return p
			}
		}
		if len(bytes.TrimSpace(body)) == 0 && rb.Value.Required {
			p := NewProblem(TypeMalformed, http.StatusBadRequest, "Malformed JSON", "the request body is empty")
			p.Errors = []FieldError{{Field: "/", Message: "a JSON body is required"}}
			return p
		}
		if p := NotUTF8(body); p != nil {
			return p
		}
		// json.Valid accepts exactly one JSON value; only a body it refuses
		// is decoded again, to tell trailing data from malformed JSON (which
		// the schema check reports).
		if !json.Valid(body) {
			if msg := TrailingData(json.NewDecoder(bytes.NewReader(body))); msg != "" {
				p := NewProblem(TypeMalformed, http.StatusBadRequest, "Malformed JSON", msg)
				p.Errors = []FieldError{{Field: "/", Message: msg}}
				return p
			}
		}
	}
	in := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		// Defaults are applied by the handlers, not written back into the
		// body (which would encode it again); the decoded body is kept for
		// them (ValidatedBody).
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			SkipSettingDefaults: true, KeepValidatedValue: true},
	}
	err := openapi3filter.ValidateRequest(r.Context(), in)
	if err == nil {
		return nil
	}
	return requestProblem(err)
}

// NotUTF8 returns the problem of a JSON body that is not UTF-8 (RFC 8259
// §8.1), nil for one that is. encoding/json would take such a body and turn
// each bad byte into U+FFFD; refused, it cannot store a string that its
// client did not send.
func NotUTF8(body []byte) *Problem {
	if utf8.Valid(body) {
		return nil
	}
	at := 0
	for at < len(body) {
		r, n := utf8.DecodeRune(body[at:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		at += n
	}
	msg := fmt.Sprintf("the body is not UTF-8: invalid byte at offset %d", at)
	p := NewProblem(TypeMalformed, http.StatusBadRequest, "Malformed JSON", msg)
	p.Errors = []FieldError{{Field: "/", Message: msg}}
	return p
}

// TrailingData reads one JSON value from dec and reports anything after it:
// a body holds exactly one JSON value. It returns "" when the value is alone
// (or when the value itself is malformed, which the schema check reports).
func TrailingData(dec *json.Decoder) string {
	var v json.RawMessage
	if dec.Decode(&v) != nil {
		return ""
	}
	if _, err := dec.Token(); err != io.EOF {
		return "unexpected data after the JSON value"
	}
	return ""
}

// requestProblem maps openapi3filter errors to problem documents.
func requestProblem(err error) *Problem {
	var errs []error
	var multi openapi3.MultiError
	if errors.As(err, &multi) {
		errs = multi
	} else {
		errs = []error{err}
	}
	var fields []FieldError
	status := http.StatusUnprocessableEntity
	for _, e := range errs {
		var re *openapi3filter.RequestError
		if !errors.As(e, &re) {
			fields = append(fields, FieldError{Field: "/", Message: e.Error()})
			continue
		}
		switch {
		case re.Parameter != nil:
			status = http.StatusBadRequest
			fields = append(fields, FieldError{Field: re.Parameter.Name, Message: paramReason(re)})
		case re.RequestBody != nil:
			var pe *openapi3filter.ParseError
			if errors.As(re.Err, &pe) {
				p := NewProblem(TypeMalformed, http.StatusBadRequest, "Malformed JSON", pe.Error())
				p.Errors = []FieldError{{Field: "/", Message: strings.TrimPrefix(pe.Error(), "body: ")}}
				return p
			}
			fields = append(fields, FieldErrors(re.Err, "")...)
		default:
			fields = append(fields, FieldError{Field: "/", Message: re.Error()})
		}
	}
	if status == http.StatusBadRequest {
		p := NewProblem(TypeValidation, status, "Invalid request parameters", "one or more parameters are invalid")
		p.Errors = fields
		return p
	}
	return ValidationProblem("the request body does not match the schema", fields...)
}

func paramReason(re *openapi3filter.RequestError) string {
	if re.Err != nil {
		var se *openapi3.SchemaError
		if errors.As(re.Err, &se) && se.Reason != "" {
			return se.Reason
		}
		return re.Err.Error()
	}
	return re.Reason
}
