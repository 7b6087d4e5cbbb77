// Package offload is the root of the Offload job service. It embeds the HTTP
// contract, openapi.yaml, so that every package serves and enforces the same
// document. The service itself lives in cmd/server; its parts in api,
// handlers, queue, statusstore, workers and web.
package offload

import _ "embed"

// OpenAPI is the HTTP contract of the service (openapi.yaml).
//
//go:embed openapi.yaml
var OpenAPI []byte
