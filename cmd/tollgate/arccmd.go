package main

import (
	"fmt"
	"io"
	"os"

	"github.com/tollgate/tollgate/arc"

	"github.com/tollgate/tollgate/internal/keyfile"
)

// keygenKind is what differs between "tollgate arc keygen" and "tollgate
// dkim keygen": they write the same key format (internal/keyfile).
type keygenKind struct {
	cmd, what, typeHelp, configHint string
	// generate makes the key (PEM) and its DNS record value; ARC's also
	// loads it into the crypto library the daemon signs with.
	generate func(kind string, bits int) (pemBytes []byte, txt string, err error)
}

var (
	arcKeygen = keygenKind{"arc", "an ARC", "the key `TYPE`: rsa or ed25519 (few verifiers check ed25519 ARC yet)",
		"arc: {sign: [{domain: %s, selector: %s, key: %s}]}",
		func(kind string, bits int) ([]byte, string, error) {
			_, pemBytes, txt, err := arc.GenerateKey(kind, bits)
			return pemBytes, txt, err
		}}
	dkimKeygen = keygenKind{"dkim", "a DKIM", "the key `TYPE`: rsa or ed25519 (an ed25519 key signs beside an rsa one)",
		"dkim_sign: {keys: [{domain: %s, selector: %s, key: %s}]}",
		func(kind string, bits int) ([]byte, string, error) {
			_, pemBytes, txt, err := keyfile.Generate(kind, bits)
			return pemBytes, txt, err
		}}
)

// cmdARC is "tollgate arc keygen": a signing key and the DNS record to publish.
func cmdARC(args []string, stdout, stderr io.Writer) int {
	return cmdKeygen(arcKeygen, args, stdout, stderr)
}

// cmdDKIM is "tollgate dkim keygen", the same for DKIM signing.
func cmdDKIM(args []string, stdout, stderr io.Writer) int {
	return cmdKeygen(dkimKeygen, args, stdout, stderr)
}

func cmdKeygen(k keygenKind, args []string, stdout, stderr io.Writer) int {
	const synopsis = "--domain DOMAIN --selector SELECTOR [--type rsa|ed25519] [--bits N] [--out FILE]"
	name := "tollgate " + k.cmd + " keygen"
	if wantsHelp(args) || len(args) == 0 || args[0] != "keygen" {
		w, code := stderr, 2
		if wantsHelp(args) {
			w, code = stdout, 0
		}
		fmt.Fprintf(w, "usage: %s %s\n\nMakes %s signing key. Run \"%s --help\" for the options.\n", name, synopsis, k.what, name)
		return code
	}
	fs := newCommand(k.cmd+" keygen", synopsis,
		"Writes a new "+k.what[len("a "):]+" signing key (mode 0600, never over an existing file) and prints\nthe DNS TXT record to publish at SELECTOR._domainkey.DOMAIN.")
	domain := fs.String("domain", "", "the signing `DOMAIN` (d=), required")
	selector := fs.String("selector", "", "the `SELECTOR` (s=), required")
	kind := fs.String("type", "rsa", k.typeHelp)
	bits := fs.Int("bits", 2048, "the RSA key size in `BITS`")
	out := fs.String("out", "", "the private key `FILE` to write (default SELECTOR.DOMAIN.key)")
	if code, done := fs.parse(args[1:], stdout, stderr); done {
		return code
	}
	if *domain == "" || *selector == "" || fs.NArg() != 0 {
		return fs.usageError(stderr, "--domain and --selector are required")
	}
	path := *out
	if path == "" {
		path = *selector + "." + *domain + ".key"
	}
	pemBytes, txt, err := k.generate(*kind, *bits)
	if err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 1
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 1
	}
	if _, err := f.Write(pemBytes); err != nil || f.Close() != nil {
		fmt.Fprintln(stderr, name+": writing", path, err)
		os.Remove(path)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s (mode 0600); publish this record, then add to the configuration:\n", path)
	fmt.Fprintf(stderr, "  "+k.configHint+"\n", *domain, *selector, path)
	fmt.Fprintln(stdout, arc.ZoneTXT(*selector+"._domainkey."+*domain+".", txt))
	return 0
}
