package dcc

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/tollgate/tollgate/dcc/dcctest"
)

// BenchmarkRequest is one whole message through a dccifd stand-in over a
// unix socket: connect, envelope, 10 headers, body in 64 KiB chunks,
// half-close, reply. The server's work (parsing, hashing) is included.
func BenchmarkRequest(b *testing.B) {
	s := dcctest.New(b, dcctest.Config{RecordLimit: -1, Handler: dcctest.Fixed(dcctest.Reply{Overall: 'A', Header: metrics})})
	o := opts(s)
	for _, size := range []int{4 << 10, 1 << 20} {
		body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), size/74+1)[:size]
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				r, err := Start(context.Background(), o, typical)
				if err != nil {
					b.Fatal(err)
				}
				for i := range 10 {
					r.Header(fmt.Sprintf("X-Header-%d", i), " some value of a typical length for a header field")
				}
				for rest := body; len(rest) > 0; {
					n := min(len(rest), 64<<10)
					if err := r.Body(rest[:n]); err != nil {
						b.Fatal(err)
					}
					rest = rest[n:]
				}
				if _, err := r.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseReply(b *testing.B) {
	for name, reply := range map[string]string{
		"header": "A\nAR\nX-DCC-EXAMPLE-Metrics: mx.example.org 1085; bulk Body=many Fuz1=many\n\tFuz2=many rep=99%\n\n",
		"short":  "G\nGG\n",
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			rd := bytes.NewReader([]byte(reply))
			for b.Loop() {
				rd.Reset([]byte(reply))
				if _, err := ParseReply(rd, 2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
