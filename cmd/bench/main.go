// Command bench measures Offload against floors: the least a service doing the
// same job could do, on the same machine, in the same run. It prints absolute
// numbers and, above all, ratios; absolute numbers depend on the machine.
//
//	go run ./cmd/bench submit [flags]
//
// submit measures the hot path of the product, POST /v1/jobs (validated
// against the OpenAPI document and the kind's schema, job record written, job
// enqueued), against a bare chi handler that does one LPUSH of the body. Both
// servers run in this process on loopback listeners, on the same Redis, with
// no worker pool; the variants alternate round by round and the median of each
// is reported. See docs/benchmarks.md.
//
//	go run ./cmd/bench serve [flags]
//
// serve runs the same servers on fixed loopback ports until interrupted, for
// a cross-check with an external load generator such as wrk.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// commands are the benchmarks this command runs, by name.
var commands = map[string]func(ctx context.Context, args []string) int{
	"submit": runSubmit,
	"engine": runEngine,
	"serve":  runServe,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: bench submit [flags]   measure POST /v1/jobs against the floor (-h: flags)\n"+
			"       bench serve [flags]    serve the variants for an external load generator (-h: flags)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := commands[os.Args[1]](ctx, os.Args[2:])
	stop()
	os.Exit(code)
}
