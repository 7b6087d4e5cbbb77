package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
)

// IntegralNumbers rewrites the numbers of the JSON document doc that have
// an integral value but are written with a fraction or an exponent (9.0,
// 1e3, 2.50e1) as integer literals, and reports whether it changed any. JSON
// Schema counts such numbers as integers, and many encoders write them so
// (Python's json.dumps of a float); encoding/json refuses them for Go
// integer fields. Numbers outside the int64 range are left as they are.
// doc must be one valid JSON value; the document returned is compact and its
// objects' members are in key order.
func IntegralNumbers(doc []byte) ([]byte, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return doc, false, err
	}
	v, changed := integral(v)
	if !changed {
		return doc, false, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return doc, false, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), true, nil
}

// DecodeIntegral runs decode, which decodes a JSON document into a Go value,
// on doc; when the Go value refuses a number that IntegralNumbers can
// rewrite, it runs decode again on the rewritten document. It returns the
// document that decode took (doc, or its rewrite, to store in its place),
// or decode's error.
func DecodeIntegral(doc []byte, decode func([]byte) error) ([]byte, error) {
	err := decode(doc)
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || !strings.HasPrefix(te.Value, "number") {
		return doc, err
	}
	fixed, changed, ferr := IntegralNumbers(doc)
	if ferr != nil || !changed {
		return doc, err
	}
	if err := decode(fixed); err != nil {
		return doc, err
	}
	return fixed, nil
}

func integral(v any) (any, bool) {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			return v, false
		}
		f, _, err := big.ParseFloat(s, 10, 256, big.ToNearestEven)
		if err != nil || !f.IsInt() {
			return v, false
		}
		i, acc := f.Int64()
		if acc != big.Exact {
			return v, false
		}
		return json.Number(fmt.Sprint(i)), true
	case map[string]any:
		changed := false
		for k, e := range x {
			if n, c := integral(e); c {
				x[k], changed = n, true
			}
		}
		return x, changed
	case []any:
		changed := false
		for i, e := range x {
			if n, c := integral(e); c {
				x[i], changed = n, true
			}
		}
		return x, changed
	}
	return v, false
}

// DecodeProblem names the field of a JSON document that encoding/json could
// not decode into a Go value, as a field error under prefix ("/args"): the
// value of a field that the schema let through but the Go type refuses.
func DecodeProblem(err error, prefix string) FieldError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := prefix
		if te.Field != "" {
			field += "/" + strings.Join(escapePointer(strings.Split(te.Field, ".")), "/")
		}
		if field == "" {
			field = "/"
		}
		return FieldError{Field: field, Message: fmt.Sprintf("%s cannot be %s", te.Value, goKind(te.Type))}
	}
	if prefix == "" {
		prefix = "/"
	}
	return FieldError{Field: prefix, Message: err.Error()}
}

// goKind describes a Go type in JSON's words.
func goKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "decoded as an integer in range"
	case reflect.Float32, reflect.Float64:
		return "decoded as a number"
	case reflect.String:
		return "decoded as a string"
	case reflect.Bool:
		return "decoded as a boolean"
	case reflect.Slice, reflect.Array:
		return "decoded as an array"
	case reflect.Map, reflect.Struct:
		return "decoded as an object"
	}
	return "decoded as " + t.String()
}
