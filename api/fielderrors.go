package api

import (
	"errors"
	"strconv"
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
		p := se.JSONPointer()
		// An unknown property is reported at its object; name the property
		// itself, which is what the client has to remove or correct.
		if name, ok := unsupportedProperty(se); ok {
			p = append(p, name)
		}
		if len(p) > 0 {
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

// unsupportedProperty returns the property that se refuses as not allowed
// by its object's schema (additionalProperties: false).
func unsupportedProperty(se *openapi3.SchemaError) (string, bool) {
	if se.SchemaField != "properties" {
		return "", false
	}
	q, ok := strings.CutPrefix(se.Reason, "property ")
	if q, ok = strings.CutSuffix(q, " is unsupported"); !ok {
		return "", false
	}
	name, err := strconv.Unquote(q)
	return name, err == nil
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
