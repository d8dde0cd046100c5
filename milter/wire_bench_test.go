package milter_test

// What the wire check costs per message: the same server and the same client
// with go-milter reading the socket itself ("direct", the path before issue
// 12) and through tollgate's buffered, validating reader ("wire").
//
//	go test -run '^$' -bench Wire -benchmem -count 6 ./milter/
//
// See docs/performance.md ("The wire check") for the figures.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/benchcpu"
	"github.com/tollgate/tollgate/internal/miltertest"
	"github.com/tollgate/tollgate/milter"
)

func BenchmarkWire(b *testing.B) {
	for _, shape := range []struct {
		name          string
		size, headers int
	}{
		{"4K-10h", 4 << 10, 10},
		{"20K-100h", 20 << 10, 100},
		{"64K-10h", 64 << 10, 10},
	} {
		hdrs, body := benchMessage(shape.size, shape.headers)
		for _, path := range []string{"direct", "wire"} {
			b.Run(shape.name+"/"+path, func(b *testing.B) {
				// Headers and body streamed to a module: every packet of the
				// message crosses the wire.
				rt := &benchRuntime{mods: []milter.Module{streamModule{}}}
				sock := filepath.Join(b.TempDir(), "m.sock")
				ln, err := net.Listen("unix", sock)
				if err != nil {
					b.Fatal(err)
				}
				srv := milter.NewServer(rt, milter.ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
					Metrics: milter.NewMetrics(prometheus.NewRegistry())})
				if path == "direct" {
					go srv.ServeUnwrapped(ln)
				} else {
					go srv.Serve(ln)
				}
				defer func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					srv.Shutdown(ctx)
				}()
				c, macros := miltertest.Client(sock)
				miltertest.Send(b, c, macros, hdrs, body, 1) // warm up
				b.SetBytes(int64(len(body)))
				cpuDone := benchcpu.Report(b)
				for b.Loop() {
					miltertest.Send(b, c, macros, hdrs, body, 1)
				}
				cpuDone() // client and server together
			})
		}
	}
}
