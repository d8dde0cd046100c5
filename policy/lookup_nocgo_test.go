//go:build !cgo

package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

// A build without cgo (the static container build) has no LMDB: an lmdb:
// item or lookup is a load error at its line, not a surprise at run time.
func TestLMDBWithoutCgo(t *testing.T) {
	db, err := filepath.Abs("testdata/lists.mdb")
	if err != nil {
		t.Fatal(err)
	}
	runListErrorCases(t, "domains", []listErrorCase{{"item", "list: [\"lmdb:" + db + "\"]\n", []string{
		"t.yaml:1: lmdb:" + db + ": this build has no LMDB support (built without cgo)",
	}}})
	_, err = Parse("t.yaml", []byte("acl:\n  rcpt:\n    - deny: {message: \"550 ${lookup{$domain}lmdb{"+db+"}}\"}\n"), testFeatures...)
	if want := "t.yaml:3: message: lmdb:" + db + ": this build has no LMDB support (built without cgo)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("lookup: %v; want %s", err, want)
	}
}

const haveLMDB = false
