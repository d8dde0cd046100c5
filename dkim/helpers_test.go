package dkim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/authres"
	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/milter"
)

// testKey is a signing key and the TXT record that publishes it.
type testKey struct {
	signer crypto.Signer
	txt    string
}

var (
	rsaOnce sync.Once
	rsaKeys map[int]testKey
)

// rsaKey returns an RSA key of the given size, made once per test binary.
func rsaKey(t testing.TB, bits int) testKey {
	t.Helper()
	rsaOnce.Do(func() {
		rsaKeys = map[int]testKey{}
		for _, n := range []int{1024, 2048} {
			k, err := rsa.GenerateKey(rand.Reader, n)
			if err != nil {
				panic(err)
			}
			der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
			rsaKeys[n] = testKey{k, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)}
		}
	})
	k, ok := rsaKeys[bits]
	if !ok {
		t.Fatalf("no %d-bit test key", bits)
	}
	return k
}

func ed25519Key(t testing.TB) testKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}
}

// publish puts a key record in the test DNS, split in strings of 255 as a
// zone file must.
func publish(srv *dnstest.Server, name, txt string) {
	var parts []string
	for len(txt) > 255 {
		parts, txt = append(parts, txt[:255]), txt[255:]
	}
	srv.Set(name, &dnstest.Zone{TXT: [][]string{append(parts, txt)}})
}

// sign returns msg with a DKIM-Signature by go-msgauth on top.
func sign(t testing.TB, msg string, o msgdkim.SignOptions) string {
	t.Helper()
	var out bytes.Buffer
	if err := msgdkim.Sign(&out, strings.NewReader(msg), &o); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

const plainMessage = "From: Alice <alice@example.org>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: a signed\r\n" +
	"  message, folded\r\n" +
	"Date: Thu, 03 Dec 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	"\r\n" +
	"a body with  double  spaces \t and trailing blank lines.\r\n" +
	"\r\n\r\n"

// splitMessage cuts a raw message into header fields as an MTA without
// the leading-space option hands them to a milter (the space after the
// colon removed, folds kept with lf as the line end) and the body.
func splitMessage(t testing.TB, raw, lf string) ([]milter.Header, []byte) {
	t.Helper()
	raw = strings.ReplaceAll(raw, "\r\n", "\n")
	head, body, ok := strings.Cut(raw, "\n\n")
	if !ok {
		t.Fatalf("no end of header section in %q", raw)
	}
	var hs []milter.Header
	for line := range strings.SplitSeq(head, "\n") {
		if line[0] == ' ' || line[0] == '\t' {
			hs[len(hs)-1].Value += lf + line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		hs = append(hs, milter.Header{Name: name, Value: strings.TrimPrefix(value, " ")})
	}
	return hs, []byte(strings.ReplaceAll(body, "\n", "\r\n"))
}

// testModule is a module on a resolver asking srv.
func testModule(t testing.TB, srv *dnstest.Server, o ModuleOptions) (*Module, *Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Metrics = NewMetrics(reg)
	o.Resolver = resolver.New(resolver.Options{Server: srv.Addr, Timeout: time.Second, CacheSize: -1})
	o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewModule(o), o.Metrics
}

// run passes one message through the module's hooks as the milter does,
// the body in chunks of the given size, and returns the transaction with
// the Authentication-Results the milter writes.
func run(t testing.TB, m *Module, hs []milter.Header, body []byte, chunk int) *milter.Txn {
	t.Helper()
	tx := &milter.Txn{Session: &milter.Session{}}
	ctx := context.Background()
	for _, h := range hs {
		if err := m.Header(ctx, tx, h); err != nil {
			t.Fatal(err)
		}
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		if err := feed(ctx, m, tx, body[:n]); err != nil {
			t.Fatal(err)
		}
		body = body[n:]
	}
	if err := finish(ctx, m, tx); err != nil {
		t.Fatal(err)
	}
	m.TxnEnd(tx)
	milter.WriteAuthResults(tx, milter.AuthResultsConfig{AuthServID: "mx.example.net", Add: true})
	return tx
}

// dkimResults are the dkim= results as they print in the header field.
func dkimResults(tx *milter.Txn) []string {
	var out []string
	for _, r := range tx.AuthResults() {
		if r.Method == "dkim" {
			out = append(out, authres.FormatResult(r))
		}
	}
	return out
}

// keyTable answers TXT lookups from a map, in the test's goroutine: for
// tests that count goroutines, where a DNS server's own would blur the
// count. Other lookups are not expected.
type keyTable map[string]string

func (k keyTable) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: name, IsTimeout: true}
	}
	if v, ok := k[strings.TrimSuffix(name, ".")]; ok {
		return []string{v}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (keyTable) LookupMX(context.Context, string) ([]*net.MX, error) { panic("not a key lookup") }
func (keyTable) LookupIPAddr(context.Context, string) ([]net.IPAddr, error) {
	panic("not a key lookup")
}
func (keyTable) LookupIP(context.Context, string, string) ([]net.IP, error) {
	panic("not a key lookup")
}
func (keyTable) LookupAddr(context.Context, string) ([]string, error) { panic("not a key lookup") }

// signOptions signs as example.org, selector s1.
func signOptions(k testKey) msgdkim.SignOptions {
	return msgdkim.SignOptions{Domain: "example.org", Selector: "s1", Signer: k.signer, HeaderKeys: headerKeys}
}

// feed plays the milter for one body chunk: the end of the header section
// first (where the module asks for its body hashes; once), then the chunk
// into the message's shared body hashes.
func feed(ctx context.Context, m *Module, tx *milter.Txn, chunk []byte) error {
	if err := m.EndOfHeaders(ctx, tx); err != nil {
		return err
	}
	tx.WriteBody(chunk)
	return nil
}

// finish ends the body as the milter does before the end-of-message hooks
// (the header section ends first when no body came), then runs the
// module's.
func finish(ctx context.Context, m *Module, tx *milter.Txn) error {
	if err := m.EndOfHeaders(ctx, tx); err != nil {
		return err
	}
	tx.EndBody()
	return m.EndOfMessage(ctx, tx)
}
