package dkim

import (
	"context"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/milter"
)

// FuzzTags reads DKIM-Signature and key-record tag lists as they come from
// the network: no panic, and what parseTags returns keeps its promises.
func FuzzTags(f *testing.F) {
	for _, s := range []string{
		"v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=s1;\r\n\th=from:to; bh=AAAA; b=ab\r\n cd==",
		"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB",
		"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"d=; s=; b=;;;",
		"=x",
		"a=b=c; d==",
		"d=example.org; d=example.net",
		"i=@example.org; d=example.org",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := parseTags(s)
		if err == nil {
			seen := map[string]bool{}
			for _, p := range tags {
				if p[0] == "" || seen[p[0]] || strings.ContainsAny(p[0], ";=") {
					t.Fatalf("tag %q of %q", p[0], s)
				}
				seen[p[0]] = true
			}
		}
		st := signatureTags(s)
		if strings.ContainsAny(st.B+st.Domain+st.Selector+st.AUID, " \t\r\n") {
			t.Fatalf("whitespace left in %+v", st)
		}
		if bits := rsaKeyBits(s); bits < 0 || bits > 1<<20 {
			t.Fatalf("%d bits", bits)
		}
	})
}

// FuzzVerify runs whatever a client sends through the module, with keys
// from a table: no panic, no goroutine left blocked, and one dkim= result
// per DKIM-Signature (or dkim=none).
func FuzzVerify(f *testing.F) {
	key := rsaKey(f, 2048)
	signed := sign(f, plainMessage, signOptions(key))
	for _, s := range []string{signed, plainMessage, strings.Replace(signed, "Hello", "Hullo", 1),
		"DKIM-Signature: v=1; d=example.org\r\nDKIM-Signature: \r\n\r\nbody\r\n",
		"DKIM-Signature: v=1; a=ed25519-sha256; d=example.org; s=s1; h=from; bh=; b=\r\nFrom: a\r\n\r\n"} {
		f.Add(s, uint8(7))
	}
	keys := keyTable{"s1._domainkey.example.org": key.txt}
	f.Fuzz(func(t *testing.T, raw string, chunk uint8) {
		if len(raw) > 1<<16 {
			return
		}
		m := NewModule(ModuleOptions{Resolver: keys})
		tx := &milter.Txn{Session: &milter.Session{}}
		ctx := context.Background()
		head, body, _ := strings.Cut(strings.ReplaceAll(raw, "\r\n", "\n"), "\n\n")
		for line := range strings.SplitSeq(head, "\n") {
			name, value, _ := strings.Cut(line, ":")
			m.Header(ctx, tx, milter.Header{Name: name, Value: value})
		}
		b := []byte(body)
		n := int(chunk) + 1
		for len(b) > 0 {
			c := min(n, len(b))
			feed(ctx, m, tx, b[:c])
			b = b[c:]
		}
		finish(ctx, m, tx)
		m.TxnEnd(tx)
		// One result per signature go-msgauth saw (signaturesIn reads the
		// section as it does), dkim=none when it saw none.
		sigs := len(m.state(tx).sigs)
		f := FactsOf(tx)
		if len(f.Signatures)+f.Skipped != sigs || len(f.Signatures) > DefaultMaxSignatures || (sigs == 0) != (f.Status == StatusNone && len(f.Signatures) == 0) {
			t.Fatalf("%d signatures, facts %+v", sigs, f)
		}
		results := 0
		for _, r := range tx.AuthResults() {
			if r.Method == "dkim" {
				results++
			}
		}
		want := max(len(f.Signatures), 1)
		if f.Skipped > 0 {
			want++
		}
		if results != want {
			t.Fatalf("%d dkim results for %d signatures", results, sigs)
		}
	})
}
