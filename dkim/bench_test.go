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
				m.Body(ctx, tx, body)
				m.EndOfMessage(ctx, tx)
				m.TxnEnd(tx)
				if c.name != "unsigned" && FactsOf(tx).Status != StatusPass {
					b.Fatalf("facts %+v", FactsOf(tx))
				}
			}
		})
	}
}
