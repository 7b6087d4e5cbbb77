package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/rs/zerolog"
)

// runServe serves every submit variant on consecutive loopback ports until
// interrupted, so that an external load generator (wrk, hey, k6) can
// cross-check `bench submit` without sharing its process with a Go client.
// Nothing is flushed while it runs: the backlogs grow until it stops.
func runServe(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("bench serve", flag.ContinueOnError)
	redisURL := fs.String("redis-url", os.Getenv("REDIS_URL"), "Redis to use (default $REDIS_URL); empty: start redis-server. "+
		"The database is flushed at start and at exit")
	redisBin := fs.String("redis-server", "redis-server", "redis-server binary, when -redis-url is empty")
	port := fs.Int("port", 9001, "port of the first variant; the others follow in -list order")
	variants := fs.String("variants", "", "comma-separated variants to serve (default all)")
	logMode := fs.String("log", "discard", "request logging of the offload API: discard or off")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintln(os.Stderr, "bench serve:", err)
		return 2
	}
	vs, err := selectVariants(submitVariants, *variants)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench serve:", err)
		return 2
	}
	rdb, where, cleanup, err := connectRedis(ctx, submitFlags{redisURL: *redisURL, redisBin: *redisBin})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench serve:", err)
		return 1
	}
	defer cleanup()
	flush := func() { _ = rdb.FlushDB(context.WithoutCancel(ctx)).Err() }
	flush()
	defer flush()
	e := &env{rdb: rdb, log: zerolog.Nop()}
	if *logMode == "discard" {
		e.log = zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Str("role", "api").Logger()
	}
	fmt.Printf("redis: %s\n", where)
	for i, v := range vs {
		addr, stop, err := serve(e, v, "127.0.0.1:"+strconv.Itoa(*port+i))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench serve:", err)
			return 1
		}
		defer stop(ctx)
		fmt.Printf("%-10s http://%s/v1/jobs\n", v.name, addr)
	}
	fmt.Println("serving until interrupted (Ctrl-C)")
	<-ctx.Done()
	return 0
}
