package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tollgate/tollgate/arc"
)

// cmdARC is "tollgate arc keygen": a signing key and the DNS record to publish.
func cmdARC(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "keygen" {
		fmt.Fprintln(stderr, "usage: tollgate arc keygen --domain D --selector S [--type rsa|ed25519] [--bits N] [--out FILE]")
		return 2
	}
	fs := flag.NewFlagSet("arc keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	domain := fs.String("domain", "", "signing domain (d=)")
	selector := fs.String("selector", "", "selector (s=)")
	kind := fs.String("type", "rsa", "key type: rsa or ed25519 (few verifiers check ed25519 ARC yet)")
	bits := fs.Int("bits", 2048, "RSA key size")
	out := fs.String("out", "", "private key file to write, mode 0600 (default SELECTOR.DOMAIN.key); never overwritten")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *domain == "" || *selector == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "tollgate arc keygen: --domain and --selector are required")
		return 2
	}
	path := *out
	if path == "" {
		path = *selector + "." + *domain + ".key"
	}
	_, pemBytes, txt, err := arc.GenerateKey(*kind, *bits)
	if err != nil {
		fmt.Fprintln(stderr, "tollgate arc keygen:", err)
		return 1
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, "tollgate arc keygen:", err)
		return 1
	}
	if _, err := f.Write(pemBytes); err != nil || f.Close() != nil {
		fmt.Fprintln(stderr, "tollgate arc keygen: writing", path, err)
		os.Remove(path)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s (mode 0600); publish this record, then add to the configuration:\n", path)
	fmt.Fprintf(stderr, "  arc: {sign: [{domain: %s, selector: %s, key: %s}]}\n", *domain, *selector, path)
	fmt.Fprintln(stdout, arc.ZoneTXT(*selector+"._domainkey."+*domain+".", txt))
	return 0
}
