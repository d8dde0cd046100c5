package main

import (
	"fmt"
	"io"

	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/srs"
	"github.com/tollgate/tollgate/srs/srsspec"
)

// cmdSRS rewrites one address with the configuration's SRS secrets, for
// operators checking a bounce address or a forwarding setup.
func cmdSRS(args []string, stdout, stderr io.Writer) int {
	if wantsHelp(args) {
		fmt.Fprint(stdout, srsUsage)
		return 0
	}
	if len(args) == 0 || (args[0] != "forward" && args[0] != "reverse") {
		fmt.Fprint(stderr, srsUsage)
		return 2
	}
	dir := args[0]
	about := "Rewrites ADDRESS as the daemon rewrites an envelope sender it forwards; a sender\nthe daemon leaves alone (null, ours, in srs.local_domains or exclude_domains) is\nprinted unchanged, with the reason on standard error."
	if dir == "reverse" {
		about = "Reverses an SRS ADDRESS to the original sender, as the daemon reverses a bounce's\nrecipient; a forged, damaged or expired one is an error with its reason."
	}
	fs := newCommand("srs "+dir, "[--config FILE] ADDRESS", about)
	config := fs.String("config", defaultConfig, "the configuration `FILE` (its srs: section)")
	if code, done := fs.parse(args[1:], stdout, stderr); done {
		return code
	}
	if fs.NArg() != 1 {
		return fs.usageError(stderr, "one ADDRESS, please")
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
		if why := srsLeavesAlone(p, s, addr); why != "" {
			fmt.Fprintf(stderr, "tollgate srs forward: %s is left unchanged: %s\n", addr, why)
			fmt.Fprintln(stdout, addr)
			return 0
		}
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

const srsUsage = `usage: tollgate srs forward [--config FILE] ADDRESS
       tollgate srs reverse [--config FILE] ADDRESS

Rewrites one address with the configuration's SRS secrets, as the daemon does.
Run "tollgate srs forward --help" or "tollgate srs reverse --help" for the options.
`

// srsLeavesAlone says why the daemon would not rewrite sender when it
// forwards a message ("" when it would): the same rules as the srs module's.
func srsLeavesAlone(p *policy.Policy, s *srs.SRS, sender string) string {
	switch {
	case sender == "" || sender == "<>":
		return "the null sender is never rewritten"
	case s.IsOurs(sender):
		return "it is already an address at the SRS domain"
	case srsspec.LocalSender(p.Section("srs"), sender):
		return "its domain is in srs.local_domains or srs.exclude_domains"
	}
	return ""
}
