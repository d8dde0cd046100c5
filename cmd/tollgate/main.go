// Command tollgate is a milter daemon for Postfix and Sendmail: client identity,
// ARC, DCC, per-recipient spam verdicts and SRS under a policy shaped like Exim ACLs.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `tollgate: a milter daemon for Postfix and Sendmail

usage:
  tollgate run     [--config FILE] [--listen ADDR] [--metrics-listen ADDR]
  tollgate check   [--config FILE] [--print]
  tollgate test    [--config FILE] --client IP --from ADDR --rcpt ADDR [--rcpt ADDR ...] [options] MESSAGE_FILE
  tollgate srs     forward|reverse [--config FILE] ADDRESS
  tollgate arc     keygen --domain D --selector S [--type rsa|ed25519] [--bits N] [--out FILE]
  tollgate version (also --version, -v)

--config defaults to /etc/tollgate/tollgate.yaml.
Run "tollgate COMMAND --help" for the options of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "test":
		return cmdTest(args[1:], stdout, stderr)
	case "srs":
		return cmdSRS(args[1:], stdout, stderr)
	case "arc":
		return cmdARC(args[1:], stdout, stderr)
	case "version", "--version", "-version", "-v", "-V":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "--help", "-h", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "tollgate: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		return "tollgate " + v + " " + bi.GoVersion + " crypto=" + cryptoName()
	}
	return "tollgate " + v + " crypto=" + cryptoName()
}

func cryptoName() string {
	impl, _ := sigcrypto.Default()
	return impl.Name()
}
