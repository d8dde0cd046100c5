// Command tollgate-bench is a milter load generator. It speaks the milter
// protocol as an MTA does (go-milter's client, with Postfix's macros and
// packet sizes) to any milter at unix:/path or inet:host:port, and measures
// messages per second, latency per stage and per message, errors by kind and,
// for a milter it starts itself, CPU time, peak RSS and allocation.
//
// Its null subcommand is a do-nothing milter built from the same go-milter
// version: with --baseline every run measures it first, under the same load,
// so that every figure can be given as a ratio to that floor.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `tollgate-bench: a milter load generator (loopback only, bounded)

usage:
  tollgate-bench [options] --target unix:/path|inet:host:port
  tollgate-bench [options] --exec "CMD ARGS..."    (CMD may use {socket} and {metrics})
  tollgate-bench null --listen unix:/path|inet:host:port [--protocol full|lean|FLAGS] [--actions FLAGS]

Every run is bounded (--messages, --duration) and measures each subject under
the same load; with --baseline, a null milter (go-milter's NoOpMilter) is
measured first in the same run and every figure is also given as a ratio to it.
Documentation: docs/performance.md.
`

func main() {
	ctx, stop := signalContext()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// signalContext ends on SIGINT or SIGTERM: the run stops starting messages
// and children are stopped.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "null":
			return cmdNull(ctx, args[1:], stdout, stderr)
		case "help":
			_, _ = parseOptions([]string{"--help"}, stdout) // prints the usage; --help is no error
			return 0
		}
	}
	opts, err := parseOptions(args, stderr)
	if err != nil {
		if err == errHelp {
			return 0
		}
		fmt.Fprintf(stderr, "tollgate-bench: %v\n", err)
		return 2
	}
	rep, err := runBench(ctx, opts, stderr)
	if rep != nil {
		if opts.json {
			if werr := writeJSON(stdout, rep); werr != nil && err == nil {
				err = werr
			}
		} else {
			writeText(stdout, rep)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "tollgate-bench: %v\n", err)
		return 1
	}
	if rep != nil && rep.Failed() {
		return 1
	}
	return 0
}
