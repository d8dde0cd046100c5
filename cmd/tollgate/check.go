package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/tollgate/tollgate/policy"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	c := newCommand("check", "[--config FILE] [--print]",
		"Checks the configuration as \"run\" would before serving, the host's side included\n(socket owner and group, socket directory, listen addresses, key and secret files),\nand prints every problem as FILE:LINE: message. Exit 0 and \"FILE: OK\" when it can be used.")
	config := c.String("config", defaultConfig, "the configuration `FILE`")
	print := c.Bool("print", false, "write the effective configuration (defaults filled in; secret files as their paths, inline secrets as <redacted>) as YAML to standard output")
	if code, done := c.parse(args, stdout, stderr); done {
		return code
	}
	if c.NArg() != 0 {
		return c.usageError(stderr, "unexpected argument %q", c.Arg(0))
	}
	p, err := policy.LoadFile(*config, features...)
	if err != nil {
		printConfigErrors(stderr, err)
		return 1
	}
	errs := validateForRun(p, "", "")
	for _, w := range append(p.Warnings, postfixWarnings(p)...) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", location(w), w.Msg)
	}
	if len(errs) > 0 {
		printConfigErrors(stderr, errs)
		return 1
	}
	if *print {
		return printEffective(p, stdout, stderr)
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
