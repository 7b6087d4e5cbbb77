package api

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestFieldErrorsNameUnknownProperties: a property that the schema does not
// allow is named itself, not by its object.
func TestFieldErrorsNameUnknownProperties(t *testing.T) {
	var s openapi3.Schema
	if err := json.Unmarshal([]byte(`{"type": "object", "additionalProperties": false,
		"properties": {"n": {"type": "integer"}, "o": {"type": "object", "additionalProperties": false, "properties": {}}}}`), &s); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := map[string]any{"n": "x", "bogus": 1, "o": map[string]any{"a/b": true}}
	got := map[string]bool{}
	for _, fe := range FieldErrors(s.VisitJSON(v, openapi3.MultiErrors()), "/args") {
		got[fe.Field] = true
	}
	for _, want := range []string{"/args/n", "/args/bogus", "/args/o/a~1b"} {
		if !got[want] {
			t.Errorf("field errors %v lack %s", got, want)
		}
	}
	if len(got) != 3 {
		t.Errorf("field errors %v, want exactly 3", got)
	}
}
