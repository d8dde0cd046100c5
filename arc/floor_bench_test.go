package arc

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/sigcrypto"
)

// The crypto floor of issue 8: a forwarding hop that validates a 3-set
// RSA-2048 chain and adds a fourth set, against the crypto that work
// cannot avoid. Run both in the same run and compare:
//
//	go test -run '^$' -bench 'ARCFloor' -count 6 ./arc/
//
// BenchmarkARCFloor/full is the package doing it (headers one by one, the
// body in 64 KB chunks, the keys fetched from a map resolver and parsed as
// the milter would from DNS); BenchmarkARCFloor/floor is the bare
// operations: 6 RSA-2048 verifications (3 AMS, 3 AS: the newest AMS,
// every seal, and the older AMSs for oldest-pass), 2 RSA-2048 signatures
// (AMS and AS of the new set), SHA-256 over the 4 KB body and over the
// header text each of the 8 signatures covers (about 1 KB each: the
// canonicalized signed headers and the signature header). Both use the
// crypto in use (sigcrypto.Default): OpenSSL in a cgo build with
// libcrypto.so.3, Go's crypto with CGO_ENABLED=0.

// threeSetChain seals a 4 KB message three times with the RSA-2048 keys
// hop1, hop2 and hop3 and returns the resolver holding their records, the
// headers (newest set first) and the body.
func threeSetChain(b *testing.B) (mapResolver, []Header, []byte) {
	res := mapResolver{}
	body := benchBody(4 << 10)
	hs := benchHeaders()
	now := time.Now()
	for _, name := range []string{"hop1", "hop2", "hop3"} {
		hs = mustSealHop(b, res, hs, body, testKey(res, name), now, nil)
	}
	if r := verifyAt(res, hs, body, now); r.State != StatePass || r.OldestPass != 1 {
		b.Fatalf("3-set chain: %s %q oldest-pass %d", r.State, r.Reason, r.OldestPass)
	}
	return res, hs, body
}

func BenchmarkARCFloor(b *testing.B) {
	res, sealed, body := threeSetChain(b)
	if n := strings.Count(headerNames(sealed), "ARC-Seal "); n != 3 {
		b.Fatalf("%d ARC-Seal headers", n)
	}
	k := testKey(res, "hop1")
	ar := Header{"Authentication-Results", " mx.example.org; arc=pass"}
	out := append([]Header{ar}, sealed...)

	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v := NewVerifier(VerifyOptions{Resolver: res})
			feed(v, sealed, body)
			if r := v.Result(context.Background()); r.State != StatePass || r.OldestPass != 1 {
				b.Fatalf("%s %q", r.State, r.Reason)
			}
			if _, err := v.Seal(SealOptions{Key: k, AuthServID: "mx.example.org", Timestamps: true}, out, []string{ar.Value}); err != nil {
				b.Fatal(err)
			}
		}
	})

	keys := []sigcrypto.Signer{testKeys()["hop1"], testKeys()["hop2"], testKeys()["hop3"]}
	headerText := []byte(strings.Repeat("x", 1<<10))
	var sigs [3][]byte
	var pubs [3]sigcrypto.PublicKey
	for i, key := range keys {
		d := sha256.Sum256(headerText)
		sigs[i], _ = key.Sign(d[:])
		var err error
		if pubs[i], err = sigcrypto.NewPublicKey(key.Public()); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sha256.Sum256(body)
			for i := range 6 { // 3 AMS and 3 AS verified
				d := sha256.Sum256(headerText)
				if err := pubs[i%3].Verify(d[:], sigs[i%3]); err != nil {
					b.Fatal(err)
				}
			}
			for range 2 { // AMS and AS of the new set
				d := sha256.Sum256(headerText)
				if _, err := keys[0].Sign(d[:]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

func headerNames(hs []Header) string {
	var s strings.Builder
	for _, h := range hs {
		s.WriteString(h.Name + " ")
	}
	return s.String()
}
