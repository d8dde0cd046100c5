package dkim

import (
	"context"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/tollgate/tollgate/milter"
)

// BenchmarkModule is the module's cost per message through its hooks, keys
// answered at once (as from the resolver's cache): an unsigned message
// (nothing but the header scan), and one signed with RSA-2048 or Ed25519.
func BenchmarkModule(b *testing.B) {
	body := strings.Repeat("A line of a message body of some 4 KiB, relaxed and hashed.\r\n", 64)
	msg := strings.Replace(plainMessage, "\r\n\r\n", "\r\n\r\n"+body, 1)
	rsaK, edK := rsaKey(b, 2048), ed25519Key(b)
	keys := keyTable{"rsa._domainkey.example.org": rsaK.txt, "ed._domainkey.example.org": edK.txt}
	for _, c := range []struct {
		name string
		msg  string
	}{
		{"unsigned", msg},
		{"rsa2048", sign(b, msg, msgdkim.SignOptions{Domain: "example.org", Selector: "rsa", Signer: rsaK.signer, HeaderKeys: headerKeys,
			HeaderCanonicalization: "relaxed", BodyCanonicalization: "relaxed"})},
		{"ed25519", sign(b, msg, msgdkim.SignOptions{Domain: "example.org", Selector: "ed", Signer: edK.signer, HeaderKeys: headerKeys,
			HeaderCanonicalization: "relaxed", BodyCanonicalization: "relaxed"})},
	} {
		b.Run(c.name, func(b *testing.B) {
			hs, body := splitMessage(b, c.msg, "\r\n")
			m := NewModule(ModuleOptions{Resolver: keys})
			ctx := context.Background()
			b.SetBytes(int64(len(c.msg)))
			b.ReportAllocs()
			for b.Loop() {
				tx := &milter.Txn{Session: &milter.Session{}}
				for _, h := range hs {
					m.Header(ctx, tx, h)
				}
				feed(ctx, m, tx, body)
				finish(ctx, m, tx)
				m.TxnEnd(tx)
				if c.name != "unsigned" && FactsOf(tx).Status != StatusPass {
					b.Fatalf("facts %+v", FactsOf(tx))
				}
			}
		})
	}
}

// BenchmarkVerify is one 4 KiB message with one RSA-2048 signature
// (relaxed/relaxed), the key answered at once: go-msgauth v0.7.0's
// verifier, which dkim used before, against the module's own, through
// its hooks (facts and Authentication-Results included). The crypto the
// module uses is sigcrypto's default (OpenSSL when libcrypto.so.3 loads).
func BenchmarkVerify(b *testing.B) {
	body := strings.Repeat("A line of a message body of some 4 KiB, relaxed and hashed.\r\n", 64)
	msg := strings.Replace(plainMessage, "\r\n\r\n", "\r\n\r\n"+body, 1)
	key := fixedKey(b, "rsa2048.pem")
	keys := keyTable{"rsa._domainkey.example.org": key.txt}
	signed := sign(b, msg, msgdkim.SignOptions{Domain: "example.org", Selector: "rsa", Signer: key.signer, HeaderKeys: headerKeys,
		HeaderCanonicalization: "relaxed", BodyCanonicalization: "relaxed"})
	b.Run("go-msgauth", func(b *testing.B) {
		lookup := func(domain string) ([]string, error) { return keys.LookupTXT(context.Background(), domain) }
		b.SetBytes(int64(len(signed)))
		b.ReportAllocs()
		for b.Loop() {
			vs, err := msgdkim.VerifyWithOptions(strings.NewReader(signed), &msgdkim.VerifyOptions{LookupTXT: lookup})
			if err != nil || len(vs) != 1 || vs[0].Err != nil {
				b.Fatal(err, vs)
			}
		}
	})
	b.Run("module", func(b *testing.B) {
		hs, body := splitMessage(b, signed, "\r\n")
		m := NewModule(ModuleOptions{Resolver: keys})
		ctx := context.Background()
		b.SetBytes(int64(len(signed)))
		b.ReportAllocs()
		for b.Loop() {
			tx := &milter.Txn{Session: &milter.Session{}}
			for _, h := range hs {
				m.Header(ctx, tx, h)
			}
			feed(ctx, m, tx, body)
			finish(ctx, m, tx)
			m.TxnEnd(tx)
			if FactsOf(tx).Status != StatusPass {
				b.Fatalf("facts %+v", FactsOf(tx))
			}
		}
	})
}
