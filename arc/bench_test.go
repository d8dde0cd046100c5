package arc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/benchcpu"
	"github.com/tollgate/tollgate/internal/dkimsig"
	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/internal/resolver"
	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// Run with: go test -run=- -bench=. -benchmem ./arc/
//
// BenchmarkSeal and BenchmarkVerify process whole messages the way the
// milter does (headers one by one, the body in 64 KB chunks); the bare
// signing benchmarks are the floor to compare them with.

// benchBody makes a text body of about n bytes: lines of words with the
// odd double space, tab and trailing blank that relaxed canonicalization
// has to fix, like real mail.
func benchBody(n int) []byte {
	words := strings.Fields("the quick brown fox jumps over the lazy dog while a forwarding list re-seals every message it sends on to its subscribers")
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		line := 0
		for j := 0; line < 68; j++ {
			w := words[(i*7+j)%len(words)]
			b.WriteString(w)
			line += len(w) + 1
			switch {
			case (i+j)%29 == 0:
				b.WriteString("  ")
			case (i+j)%41 == 0:
				b.WriteString("\t")
			default:
				b.WriteString(" ")
			}
		}
		if i%5 == 0 {
			b.WriteString(" ") // trailing blank
		}
		b.WriteString("\r\n")
		if i%12 == 0 {
			b.WriteString("\r\n")
		}
	}
	return []byte(b.String())
}

func benchHeaders() []Header {
	hs, _ := parseMessage(plainMessage)
	return append(hs,
		Header{"Received", " from mail.origin.example (mail.origin.example [192.0.2.1])\r\n\tby mx.example.org with ESMTPS id 4Xyz; Mon, 16 Jun 2025 10:00:01 +0000"},
		Header{"MIME-Version", " 1.0"},
		Header{"Content-Type", " text/plain; charset=utf-8"},
	)
}

func feed(v *Verifier, hs []Header, body []byte) {
	for _, h := range hs {
		v.Header(h)
	}
	v.EndOfHeaders()
	for len(body) > 0 {
		n := min(64<<10, len(body))
		v.Body(body[:n])
		body = body[n:]
	}
}

var benchSizes = []struct {
	name string
	n    int
}{{"4KB", 4 << 10}, {"1MB", 1 << 20}}

var benchKeys = []struct{ name, key string }{{"rsa2048", "hop1"}, {"ed25519", "ed1"}}

func BenchmarkSeal(b *testing.B) {
	for _, size := range benchSizes {
		body := benchBody(size.n)
		for _, bk := range benchKeys {
			res := mapResolver{}
			k := testKey(res, bk.key)
			hs := benchHeaders()
			ar := Header{"Authentication-Results", " mx.example.org; arc=none"}
			out := append([]Header{ar}, hs...)
			opts := SealOptions{Key: k, AuthServID: "mx.example.org"}
			b.Run(size.name+"/"+bk.name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				defer benchcpu.Report(b)()
				for b.Loop() {
					v := NewVerifier(VerifyOptions{Resolver: res})
					feed(v, hs, body)
					v.Result(context.Background())
					if _, err := v.Seal(opts, out, []string{ar.Value}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, size := range benchSizes {
		body := benchBody(size.n)
		for _, bk := range benchKeys {
			res := mapResolver{}
			k := testKey(res, bk.key)
			sealed := mustSealHop(b, res, benchHeaders(), body, k, time.Now(), nil)
			b.Run(size.name+"/"+bk.name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					v := NewVerifier(VerifyOptions{Resolver: res, VerifyOnly: true})
					feed(v, sealed, body)
					if r := v.Result(context.Background()); r.State != StatePass {
						b.Fatal(r.Reason)
					}
				}
			})
		}
	}
}

// BenchmarkVerifyAndSeal is a forwarding hop: validate a one-set chain,
// then add the second set.
func BenchmarkVerifyAndSeal(b *testing.B) {
	body := benchBody(4 << 10)
	for _, bk := range benchKeys {
		res := mapResolver{}
		k := testKey(res, bk.key)
		sealed := mustSealHop(b, res, benchHeaders(), body, k, time.Now(), nil)
		ar := Header{"Authentication-Results", " mx.example.org; arc=pass"}
		out := append([]Header{ar}, sealed...)
		b.Run("4KB/"+bk.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v := NewVerifier(VerifyOptions{Resolver: res})
				feed(v, sealed, body)
				v.Result(context.Background())
				if _, err := v.Seal(SealOptions{Key: k, AuthServID: "mx.example.org"}, out, []string{ar.Value}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The floor: one bare signature over a digest, with the crypto in use
// (sigcrypto.Default).
func BenchmarkBareSign(b *testing.B) {
	digest := sha256.Sum256([]byte("x"))
	for _, bk := range benchKeys {
		k := testKeys()[bk.key]
		b.Run(bk.name, func(b *testing.B) {
			b.ReportAllocs()
			defer benchcpu.Report(b)()
			for b.Loop() {
				if _, err := k.Sign(digest[:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("rsa2048-verify", func(b *testing.B) {
		k := testKeys()["hop1"]
		sig, _ := k.Sign(digest[:])
		pub, err := sigcrypto.NewPublicKey(k.Public())
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := pub.Verify(digest[:], sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBodyHash measures canonicalization plus SHA-256 per byte over
// 1 MB: "text" is the messy plain text of benchBody (a fix every ~40
// bytes), "base64" lines of 76 printable characters as in most MIME
// parts; the sha256 case is the hash alone, the ceiling.
func BenchmarkBodyHash(b *testing.B) {
	bodies := map[string][]byte{"text": benchBody(1 << 20), "base64": base64Body(1 << 20)}
	for _, kind := range []string{"text", "base64"} {
		body := bodies[kind]
		for _, c := range []string{"relaxed", "simple", "sha256"} {
			b.Run(kind+"/"+c, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if c == "sha256" {
						sha256.Sum256(body)
						continue
					}
					bc := &dkimsig.BodyCanon{Relaxed: c == "relaxed", Sinks: []*dkimsig.BodyHash{{Hash: sha256.New(), Limit: -1}}}
					for p := body; len(p) > 0; {
						n := min(64<<10, len(p))
						bc.Write(p[:n])
						p = p[n:]
					}
					bc.Close()
				}
			})
		}
	}
}

func base64Body(n int) []byte {
	raw := make([]byte, n*3/4)
	for i := range raw {
		raw[i] = byte(i * 131 >> 3)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var b strings.Builder
	for len(enc) > 0 {
		k := min(76, len(enc))
		b.WriteString(enc[:k] + "\r\n")
		enc = enc[k:]
	}
	return []byte(b.String())
}

func TestBenchBodyShape(t *testing.T) {
	body := benchBody(64 << 10)
	rel := &dkimsig.BodyHash{Hash: sha256.New(), Limit: -1}
	c := dkimsig.BodyCanon{Relaxed: true, Sinks: []*dkimsig.BodyHash{rel}}
	c.Write(body)
	c.Close()
	if len(body) < 64<<10 || rel.N >= int64(len(body)) {
		t.Fatalf("bench body %d bytes, relaxed %d: it should need canonicalizing", len(body), rel.N)
	}
}

// BenchmarkVerifyHangingResolver: 4 KB messages sealed with RSA-2048
// verified by 8 concurrent sessions through the shared resolver and a loopback
// DNS server that answers ("answering") or never does ("hanging", after
// the first timeout, which is paid before the timer starts; the failure
// is then asked again every FailureTTL, a 100 ms timeout each time).
// "hanging-uncached" is the same with FailureTTL off, as before issue 18.
// The target: hanging at least half the answering throughput.
//
//	go test -run=- -bench=VerifyHangingResolver -benchtime=10s ./arc/
func BenchmarkVerifyHangingResolver(b *testing.B) {
	srv := dnstest.Start(b)
	keys := mapResolver{}
	body := benchBody(4 << 10)
	sealed := mustSealHop(b, keys, benchHeaders(), body, testKey(keys, "hop1"), time.Now(), nil)
	var parts []string
	for rec := keys["sel._domainkey.hop1.example"][0]; len(rec) > 0; {
		n := min(255, len(rec))
		parts, rec = append(parts, rec[:n]), rec[n:]
	}
	for _, tc := range []struct {
		name       string
		zone       *dnstest.Zone
		failureTTL time.Duration
		want       State
	}{
		{"answering", &dnstest.Zone{TTL: 300, TXT: [][]string{parts}}, 0, StatePass},
		{"hanging", &dnstest.Zone{Silent: true}, 0, StateFail},
		{"hanging-uncached", &dnstest.Zone{Silent: true}, -1, StateFail},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv.Set("sel._domainkey.hop1.example", tc.zone)
			res := resolver.New(resolver.Options{Server: srv.Addr, Timeout: 100 * time.Millisecond, FailureTTL: tc.failureTTL})
			res.LookupTXT(context.Background(), "sel._domainkey.hop1.example")
			b.SetParallelism(4) // 8 sessions on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					v := NewVerifier(VerifyOptions{Resolver: res, VerifyOnly: true})
					feed(v, sealed, body)
					if r := v.Result(context.Background()); r.State != tc.want {
						b.Error(r.Reason)
						return
					}
				}
			})
		})
	}
}

// BenchmarkVerifyKeyCache: one 4 KB message with one ARC set, the key
// record parsed for every message ("parse") or kept parsed by a KeyCache
// as the milter module does ("cached").
//
//	go test -run=- -bench=VerifyKeyCache -count=5 ./arc/
func BenchmarkVerifyKeyCache(b *testing.B) {
	body := benchBody(4 << 10)
	for _, bk := range benchKeys {
		res := mapResolver{}
		sealed := mustSealHop(b, res, benchHeaders(), body, testKey(res, bk.key), time.Now(), nil)
		for _, mode := range []string{"parse", "cached"} {
			var cache *KeyCache
			if mode == "cached" {
				cache = NewKeyCache(0)
			}
			b.Run(bk.name+"/"+mode, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					v := NewVerifier(VerifyOptions{Resolver: res, Keys: cache, VerifyOnly: true})
					feed(v, sealed, body)
					if r := v.Result(context.Background()); r.State != StatePass {
						b.Fatal(r.Reason)
					}
				}
			})
		}
	}
}

// BenchmarkParseKeyRecord is what KeyCache saves per key and message.
func BenchmarkParseKeyRecord(b *testing.B) {
	for _, bk := range benchKeys {
		res := mapResolver{}
		testKey(res, bk.key)
		rec := res["sel._domainkey."+bk.key+".example"][0]
		b.Run(bk.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseKeyRecord(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyNoARC: a message without ARC headers when a seal may
// follow ("seal-rule": the relaxed body hash is computed) and when no rule
// seals ("no-seal-rule": nothing is hashed).
//
//	go test -run=- -bench=VerifyNoARC -count=5 ./arc/
func BenchmarkVerifyNoARC(b *testing.B) {
	hs := benchHeaders()
	for _, size := range benchSizes {
		body := benchBody(size.n)
		for _, mode := range []string{"seal-rule", "no-seal-rule"} {
			b.Run(size.name+"/"+mode, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					v := NewVerifier(VerifyOptions{Resolver: mapResolver{}, VerifyOnly: mode == "no-seal-rule"})
					feed(v, hs, body)
					if r := v.Result(context.Background()); r.State != StateNone {
						b.Fatal(r.State)
					}
				}
			})
		}
	}
}
