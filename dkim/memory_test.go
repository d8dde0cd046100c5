package dkim

import (
	"context"
	"runtime"
	"strconv"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/tollgate/tollgate/milter"
)

// bigBody writes a body of size bytes to write, in chunks of one reused
// buffer, so that the test itself never holds it.
func bigBody(size int, write func([]byte)) {
	chunk := make([]byte, 0, 64<<10)
	lineBuf := make([]byte, 0, 80)
	for line := 0; size > 0; line++ {
		l := strconv.AppendInt(lineBuf[:0], int64(line), 10)
		l = append(l, " of a large body, to be hashed and never kept\r\n"...)
		if len(l) > size {
			l = l[:size]
		}
		if len(chunk)+len(l) > cap(chunk) {
			write(chunk)
			chunk = chunk[:0]
		}
		chunk = append(chunk, l...)
		size -= len(l)
	}
	write(chunk)
}

// TestLargeBodyStreams verifies a 20 MiB body, with one signature (go-msgauth
// reads the pipe itself) and with three (it fans the body out to one
// goroutine per signature), and checks that the live heap stays small: the
// body is hashed as it streams, never gathered.
func TestLargeBodyStreams(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(strconv.Itoa(n)+" signatures", func(t *testing.T) { largeBody(t, n) })
	}
}

func largeBody(t *testing.T, signatures int) {
	const size = 20 << 20
	key := rsaKey(t, 2048)
	head := "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: large\r\n\r\n"
	sigs := ""
	for i := range signatures {
		signer, err := msgdkim.NewSigner(&msgdkim.SignOptions{Domain: "example.org", Selector: "s1", Signer: key.signer,
			HeaderCanonicalization: "relaxed", BodyCanonicalization: []msgdkim.Canonicalization{"relaxed", "simple"}[i%2]})
		if err != nil {
			t.Fatal(err)
		}
		signer.Write([]byte(head))
		bigBody(size, func(b []byte) { signer.Write(b) })
		if err := signer.Close(); err != nil {
			t.Fatal(err)
		}
		sigs += signer.Signature()
	}
	hs, _ := splitMessage(t, sigs+head, "\r\n")

	m := NewModule(ModuleOptions{Resolver: keyTable{"s1._domainkey.example.org": key.txt}})
	tx := &milter.Txn{Session: &milter.Session{}}
	ctx := context.Background()
	// The live heap, after a collection, every 2 MiB of body: what the
	// verification holds, whatever garbage it makes on the way.
	liveHeap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base, peak, sent := liveHeap(), uint64(0), 0
	for _, h := range hs {
		m.Header(ctx, tx, h)
	}
	bigBody(size, func(b []byte) {
		feed(ctx, m, tx, b)
		if sent += len(b); sent%(2<<20) < len(b) {
			peak = max(peak, liveHeap())
		}
	})
	finish(ctx, m, tx)
	peak = max(peak, liveHeap())
	m.TxnEnd(tx)
	if f := FactsOf(tx); f.Status != StatusPass || len(f.Signatures) != signatures || f.Signatures[signatures-1].Status != StatusPass {
		t.Fatalf("facts %+v", f)
	}
	if grew := int64(peak) - int64(base); grew > 4<<20 {
		t.Errorf("the live heap grew by %d KiB while verifying a %d KiB body", grew>>10, size>>10)
	} else {
		t.Logf("the live heap grew by %d KiB at most while verifying a %d KiB body", grew>>10, size>>10)
	}
}
