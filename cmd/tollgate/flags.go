package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// gnuFlag finds the single-dash flag names in the flag package's messages.
var gnuFlag = regexp.MustCompile(`: -([A-Za-z])`)

// command is a subcommand's flag set with GNU-style help: "--help" prints
// the synopsis and one line per option, written --name VALUE, to standard
// output and exits 0; a mistake prints the problem and a pointer to --help
// to standard error and exits 2. (Go's flag package takes both -name and
// --name; the help shows the GNU form.)
type command struct {
	*flag.FlagSet
	name     string // "run", "srs forward", ...
	synopsis string // what follows "tollgate NAME" in the usage line
	about    string // one sentence: what the command does
}

func newCommand(name, synopsis, about string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &command{FlagSet: fs, name: name, synopsis: synopsis, about: about}
}

// parse parses args; done says the command must return code now.
func (c *command) parse(args []string, stdout, stderr io.Writer) (code int, done bool) {
	err := c.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		c.usage(stdout)
		return 0, true
	}
	return c.usageError(stderr, "%s", gnuFlag.ReplaceAllString(err.Error(), ": --$1")), true
}

// usageError reports a wrong use found after parsing (a missing argument).
func (c *command) usageError(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "tollgate %s: %s\nusage: tollgate %s %s\nRun \"tollgate %s --help\" for the options.\n", c.name, fmt.Sprintf(format, args...), c.name, c.synopsis, c.name)
	return 2
}

func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: tollgate %s %s\n\n%s\n", c.name, c.synopsis, c.about)
	var lines [][2]string
	width := 0
	c.VisitAll(func(f *flag.Flag) {
		value, text := flag.UnquoteUsage(f)
		switch value {
		case "":
		case "string", "value":
			value = " VALUE"
		case "int", "uint", "int64", "uint64":
			value = " N"
		case "duration":
			value = " DURATION"
		default:
			value = " " + value
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			text += " (default " + f.DefValue + ")"
		}
		spec := "--" + f.Name + value
		width = max(width, len(spec))
		lines = append(lines, [2]string{spec, text})
	})
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "\noptions:")
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l[0], l[1])
	}
	fmt.Fprintf(w, "  %-*s  %s\n", width, "--help", "print this help and exit")
}

// wantsHelp reports whether args ask for help before a sub-subcommand
// ("tollgate srs --help").
func wantsHelp(args []string) bool {
	return len(args) > 0 && (args[0] == "--help" || args[0] == "-help" || args[0] == "-h" || strings.EqualFold(args[0], "help"))
}
