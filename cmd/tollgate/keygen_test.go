package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tollgate dkim keygen writes a key that dkim_sign loads as the hint says,
// refuses to overwrite it, and prints the record for the selector.
func TestDKIMKeygen(t *testing.T) {
	dir := t.TempDir()
	for _, kind := range []string{"rsa", "ed25519"} {
		key := filepath.Join(dir, kind+".key")
		var out, errOut bytes.Buffer
		if code := run([]string{"dkim", "keygen", "--domain", "example.org", "--selector", kind + "2026", "--type", kind, "--out", key}, &out, &errOut); code != 0 {
			t.Fatalf("%s: exit %d: %s", kind, code, errOut.String())
		}
		if !strings.HasPrefix(out.String(), kind+`2026._domainkey.example.org. IN TXT ( "v=DKIM1; k=`+kind+"; p=") {
			t.Errorf("%s: record %q", kind, out.String())
		}
		hint := "dkim_sign: {keys: [{domain: example.org, selector: " + kind + "2026, key: " + key + "}]}"
		if !strings.Contains(errOut.String(), hint) {
			t.Errorf("%s: hint %q", kind, errOut.String())
		}
		if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", kind, st.Mode(), err)
		}
		conf := filepath.Join(dir, kind+".yaml")
		if err := os.WriteFile(conf, []byte(hint+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if code := run([]string{"check", "--config", conf}, &out, &errOut); code != 0 {
			t.Errorf("%s: check of the hinted configuration: exit %d: %s", kind, code, errOut.String())
		}
		if code := run([]string{"dkim", "keygen", "--domain", "example.org", "--selector", "s", "--out", key}, &out, &errOut); code != 1 {
			t.Errorf("%s: overwrote an existing key (exit %d)", kind, code)
		}
	}
}
