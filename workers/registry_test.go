package workers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// TestDecodeArgs: arguments that pass a kind's schema but that its Go type
// refuses are named as field errors at submit; integers written as floats
// are rewritten so that they decode.
func TestDecodeArgs(t *testing.T) {
	type args struct {
		N     int             `json:"n"`
		Inner struct{ M int } `json:"inner"`
		Data  []byte          `json:"data"`
	}
	r := NewRegistry()
	MustRegister(r, Kind[args]{Name: "k", Schema: `{"type": "object"}`,
		Handler: func(context.Context, *Job, args) (Result, error) { return Result{}, nil }})

	for _, c := range []struct {
		in, want, field string
	}{
		{in: `{"n":3}`, want: `{"n":3}`},
		{in: `{"n":3.0,"inner":{"M":2e1},"x":"<&>"}`, want: `{"inner":{"M":20},"n":3,"x":"<&>"}`},
		{in: `{"n":3.5}`, field: "/args/n"},
		{in: `{"n":1e300}`, field: "/args/n"},
		{in: `{"n":"three"}`, field: "/args/n"},
		{in: `{"inner":{"M":true}}`, field: "/args/inner/M"},
		{in: `{"data":"abc"}`, field: "/args"},
	} {
		got, errs := r.DecodeArgs("k", json.RawMessage(c.in))
		switch {
		case c.field == "" && (len(errs) > 0 || string(got) != c.want):
			t.Errorf("%s: got %s, %v; want %s", c.in, got, errs, c.want)
		case c.field != "" && (len(errs) != 1 || errs[0].Field != c.field):
			t.Errorf("%s: errors %v; want one naming %s", c.in, errs, c.field)
		}
	}
	if _, errs := r.DecodeArgs("nope", json.RawMessage(`{}`)); len(errs) != 1 || errs[0].Field != "/kind" {
		t.Errorf("unknown kind: %v", errs)
	}
}

// TestByteFormatIsStandardBase64: "format": "byte" arguments must decode as
// encoding/json decodes []byte (standard alphabet, padded), which
// kin-openapi's own pattern does not check.
func TestByteFormatIsStandardBase64(t *testing.T) {
	r := NewRegistry()
	MustRegister(r, Kind[struct{}]{Name: "b", Schema: `{"type": "object", "properties": {"data": {"type": "string", "format": "byte"}}}`,
		Handler: func(context.Context, *Job, struct{}) (Result, error) { return Result{}, nil }})
	good := base64.StdEncoding.EncodeToString([]byte{0xfb, 0xff, 0x01, 0x02})
	for in, ok := range map[string]bool{
		good:               true,
		"":                 true,
		"abc":              false, // unpadded
		"-_8BAg==":         false, // base64url alphabet
		good[:len(good)-1]: false, // missing padding
		"Zm9v\nYmFy":       true,  // newlines are ignored, as encoding/json ignores them
	} {
		errs := r.ValidateValue("b", map[string]any{"data": in})
		if ok != (len(errs) == 0) {
			t.Errorf("%q: errors %v, want ok=%v", in, errs, ok)
		}
		if !ok && (len(errs) != 1 || errs[0].Field != "/args/data") {
			t.Errorf("%q: errors %v, want one naming /args/data", in, errs)
		}
	}
}

func TestRegisterRefuses(t *testing.T) {
	noop := func(context.Context, *Job, struct{}) (Result, error) { return Result{}, nil }
	for _, c := range []struct {
		name string
		kind Kind[struct{}]
		want string
	}{
		{"no handler", Kind[struct{}]{Name: "k", Schema: `{}`}, "needs a Name and a Handler"},
		{"no schema", Kind[struct{}]{Name: "k", Handler: noop}, `kind k: a Schema is required`},
		{"bad schema", Kind[struct{}]{Name: "k", Schema: `{"type": 5}`, Handler: noop}, "kind k: schema"},
		{"unserved target", Kind[struct{}]{Name: "k", Schema: `{}`, Target: "thumbs", Handler: noop},
			`Target "thumbs" is not a collection the API serves (images, reports)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Register(NewRegistry(), c.kind)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Register = %v, want an error containing %q", err, c.want)
			}
		})
	}
	for _, target := range []string{"", "images", "reports"} {
		if err := Register(NewRegistry(), Kind[struct{}]{Name: "k", Schema: `{}`, Target: target, Handler: noop}); err != nil {
			t.Errorf("Register with Target %q: %v", target, err)
		}
	}
}
