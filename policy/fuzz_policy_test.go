package policy

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/milter"
)

// FuzzParsePolicy feeds whole configuration files to the loader; whatever loads
// must also evaluate without panicking.
func FuzzParsePolicy(f *testing.F) {
	for _, ex := range docExamples(f, f.TempDir()) {
		f.Add(ex.data)
	}
	for _, glob := range []string{"../deploy/examples/*.yaml", "testdata/policies/*.yaml"} {
		files, _ := filepath.Glob(glob)
		if len(files) == 0 {
			f.Fatalf("no seed files match %s", glob)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("acl:\n  rcpt:\n    - deny: {recipients: [\"^.*$\"], message: \"550 5.7.1 $local_part$$\"}\n"))
	f.Add([]byte("lists: {a: [+b], b: [+a]}\nacl: {connect: [{deny: {hosts: [+a]}}]}\n"))
	f.Add([]byte("acl:\n  data:\n    - warn: {set: {acl_m_x: \"${sender_address}\"}, add_header: \":at_start:X: $acl_m_x\"}\n"))
	// Lookups: nested, unclosed, with a variable path, a missing database.
	f.Add([]byte("acl:\n  rcpt:\n    - deny: {message: \"550 ${lookup{${lookup{$domain}cdb{/nonexistent}}}lmdb{/nonexistent}}\"}\n"))
	f.Add([]byte("acl:\n  mail:\n    - warn: {set: {acl_m_x: \"${lookup{$sender_address}lmdb{$x}}${lookup{\"}}\n"))
	metrics := milter.NewMetrics(prometheus.NewRegistry())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data, testFeatures...)
		if err != nil {
			return
		}
		// A policy that loads must evaluate at every stage, with the context
		// each stage really has (no message before mail, no current
		// recipient outside rcpt), without panicking.
		s := &milter.Session{Vars: map[string]string{}, Identity: milter.Identity{ClientAddr: netip.MustParseAddr("192.0.2.1"), AuthLogin: "u"}}
		tx := &milter.Txn{Session: s, Sender: "a@example.net", Headers: []milter.Header{{Name: "Subject", Value: "x"}}, BodyBytes: 10}
		r := &milter.Recipient{Addr: "b@example.org"}
		tx.Rcpts = []*milter.Recipient{r}
		for _, st := range milter.PolicyStages {
			switch st {
			case milter.StageConnect, milter.StageHelo:
				p.evaluate(log, metrics, st, s, nil, nil)
			case milter.StageRcpt:
				p.evaluate(log, metrics, st, s, tx, r)
			default:
				p.evaluate(log, metrics, st, s, tx, nil)
			}
		}
	})
}
