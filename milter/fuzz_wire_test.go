package milter

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FuzzWire feeds arbitrary byte streams to the real server (go-milter behind
// tollgate's wire check) over a real socket. go-milter panics in a goroutine
// of its own, where no recover reaches: any input that gets one past the wire
// check kills the fuzzing process, which is the failure this target hunts.
// Seeds (testdata/fuzz/FuzzWire) include the five shapes of issue 12 and a
// whole session; run it with
//
//	go test -run '^$' -fuzz FuzzWire -fuzztime 10m ./milter
func FuzzWire(f *testing.F) {
	for _, raw := range killerShapes {
		f.Add(raw)
	}
	f.Add(wholeSession())
	sock := filepath.Join(f.TempDir(), "m.sock")
	srv := NewServer(fullRuntime(), ServerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: NewMetrics(prometheus.NewRegistry()), Limits: Limits{IdleTimeout: 2 * time.Second}})
	ln, err := Listen(Address{Network: "unix", Addr: sock}, SocketOptions{})
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(ln)
	f.Cleanup(func() { ln.Close() })
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var wg sync.WaitGroup
		wg.Go(func() {
			c.Write(raw)
			c.(*net.UnixConn).CloseWrite()
		})
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c) // until the server closes: it read everything or gave up on it
		c.Close()
		wg.Wait()
	})
}

// wholeSession is one message as Postfix sends it, for the fuzzer to mutate.
func wholeSession() []byte {
	return cat(optneg,
		packet('D', "Cj\x00mx.example.org\x00{daemon_name}\x00mx\x00"),
		packet('C', "mail.example.com\x004\x9c\x40192.0.2.1\x00"),
		packet('D', "H{tls_version}\x00TLSv1.3\x00"),
		packet('H', "mail.example.com\x00"),
		packet('D', "Mi\x00Q1\x00{auth_authen}\x00alice\x00"),
		packet('M', "<a@example.net>\x00SIZE=100\x00"),
		packet('R', "<b@example.org>\x00"),
		packet('T', ""),
		packet('L', "Subject\x00 hi\x00"),
		packet('L', "From\x00 a@example.net\x00"),
		packet('N', ""),
		packet('B', "body\r\n"),
		packet('E', ""),
		packet('A', ""),
		packet('K', ""),
		packet('C', "other\x00U"),
		packet('U', "XYZZY\x00"),
		packet('Q', ""),
	)
}
