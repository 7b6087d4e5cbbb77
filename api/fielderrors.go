package api

import (
	"errors"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// FieldErrors turns a kin-openapi schema validation error (a single
// *openapi3.SchemaError or an openapi3.MultiError of them) into field errors
// whose Field is a JSON Pointer under prefix ("/args/width"). Any other error
// becomes one field error at prefix.
func FieldErrors(err error, prefix string) []FieldError {
	var multi openapi3.MultiError
	if errors.As(err, &multi) {
		var out []FieldError
		for _, e := range multi {
			out = append(out, FieldErrors(e, prefix)...)
		}
		return out
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		field := prefix
		if p := se.JSONPointer(); len(p) > 0 {
			field += "/" + strings.Join(escapePointer(p), "/")
		}
		if field == "" {
			field = "/"
		}
		return []FieldError{{Field: field, Message: schemaReason(se)}}
	}
	field := prefix
	if field == "" {
		field = "/"
	}
	return []FieldError{{Field: field, Message: err.Error()}}
}

func schemaReason(se *openapi3.SchemaError) string {
	if se.Reason != "" {
		return se.Reason
	}
	return se.Error()
}

func escapePointer(p []string) []string {
	out := make([]string, len(p))
	for i, s := range p {
		out[i] = strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
	}
	return out
}
