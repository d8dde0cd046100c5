package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/srs"
	"github.com/tollgate/tollgate/srs/srsspec"
)

// cmdSRS rewrites one address with the configuration's SRS secrets, for
// operators checking a bounce address or a forwarding setup.
func cmdSRS(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "forward" && args[0] != "reverse") {
		fmt.Fprintln(stderr, "usage: tollgate srs forward|reverse [--config FILE] ADDRESS")
		return 2
	}
	dir := args[0]
	fs := flag.NewFlagSet("srs "+dir, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", defaultConfig, "configuration file (its srs: section)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "usage: tollgate srs %s [--config FILE] ADDRESS\n", dir)
		return 2
	}
	p, err := policy.LoadFile(*config, features...)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	s, err := srsspec.Rewriter(p.Section("srs"))
	if err != nil {
		fmt.Fprintf(stderr, "tollgate srs: %s: %v\n", *config, err)
		return 1
	}
	addr := fs.Arg(0)
	var out string
	if dir == "forward" {
		out, err = s.Forward(addr)
	} else {
		out, err = s.Reverse(addr)
	}
	if err != nil {
		// The status is what the milter would set as srs_status.
		fmt.Fprintf(stderr, "tollgate srs %s: %s: %v (status %s, reason %s)\n", dir, addr, err, srs.StatusOf(err), srs.Reason(err))
		return 1
	}
	fmt.Fprintln(stdout, out)
	return 0
}
