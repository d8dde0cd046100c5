package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/tollgate/tollgate/policy"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", defaultConfig, "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	p, err := policy.LoadFile(*config)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	errs := validateForRun(p, "", "")
	for _, w := range p.Warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", location(w), w.Msg)
	}
	if len(errs) > 0 {
		printConfigErrors(stderr, errs)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n", *config)
	return 0
}

const defaultConfig = "/etc/tollgate/tollgate.yaml"

func printConfigErrors(w io.Writer, err error) {
	var list policy.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func location(e policy.Error) string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	return e.File
}
