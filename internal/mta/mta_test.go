package mta

import (
	"bytes"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

// recorder is a milter that keeps what the emulator sent it.
type recorder struct {
	gomilter.NoOpMilter
	mu       *sync.Mutex
	headers  *[]string
	chunks   *[]int
	skipBody bool
}

func (r recorder) Header(name, value string, _ gomilter.Modifier) (*gomilter.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.headers = append(*r.headers, name+":"+value)
	return gomilter.RespContinue, nil
}

func (r recorder) BodyChunk(chunk []byte, _ gomilter.Modifier) (*gomilter.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.chunks = append(*r.chunks, len(chunk))
	if r.skipBody {
		return gomilter.RespSkip, nil
	}
	return gomilter.RespContinue, nil
}

// session runs one message through a real go-milter server whose milter
// negotiates protocol, and returns the headers and body chunk sizes it got.
func session(t *testing.T, protocol gomilter.OptProtocol, skipBody bool, fields [][2]string, body []byte) (headers []string, chunks []int, bodyAct *gomilter.Action) {
	t.Helper()
	var mu sync.Mutex
	sock := filepath.Join(t.TempDir(), "m.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter {
		return recorder{mu: &mu, headers: &headers, chunks: &chunks, skipBody: skipBody}
	}), gomilter.WithProtocols(protocol))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	s, err := NewClient("unix", sock).Session(gomilter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []func() (*gomilter.Action, error){
		func() (*gomilter.Action, error) {
			return s.Conn("h", Family(netip.MustParseAddr("192.0.2.1")), 1, "192.0.2.1")
		},
		func() (*gomilter.Action, error) { return s.Helo("h") },
		func() (*gomilter.Action, error) { return s.Mail("a@example.net", "") },
		func() (*gomilter.Action, error) { return s.Rcpt("b@example.org", "") },
		s.DataStart,
	}
	for _, f := range fields {
		steps = append(steps, func() (*gomilter.Action, error) { return Header(s, f[0], f[1]) })
	}
	steps = append(steps, s.HeaderEnd)
	for _, step := range steps {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if bodyAct, err = Body(s, body); err != nil {
		t.Fatal(err)
	}
	if bodyAct == nil {
		if _, _, err := s.End(); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), headers...), append([]int(nil), chunks...), bodyAct
}

func TestHeaderLeadingSpace(t *testing.T) {
	fields := [][2]string{{"Subject", " hi"}, {"X-Tight", "no-space"}, {"X-Two", "  two"}}
	got, _, _ := session(t, 0, false, fields, nil)
	if want := []string{"Subject:hi", "X-Tight:no-space", "X-Two: two"}; !slices.Equal(got, want) {
		t.Errorf("without OptHeaderLeadingSpace: %q, want %q", got, want)
	}
	got, _, _ = session(t, gomilter.OptHeaderLeadingSpace, false, fields, nil)
	if want := []string{"Subject: hi", "X-Tight:no-space", "X-Two:  two"}; !slices.Equal(got, want) {
		t.Errorf("with OptHeaderLeadingSpace: %q, want %q", got, want)
	}
}

func TestBodyChunks(t *testing.T) {
	for _, c := range []struct {
		size int
		want []int
	}{
		{0, []int{0}},
		{10, []int{10}},
		{BodyChunk, []int{BodyChunk}},
		{2*BodyChunk + 1, []int{BodyChunk, BodyChunk, 1}},
	} {
		_, chunks, act := session(t, 0, false, nil, bytes.Repeat([]byte("x"), c.size))
		if act != nil || !slices.Equal(chunks, c.want) {
			t.Errorf("%d bytes: chunks %v, action %v; want %v and the end of message next", c.size, chunks, act, c.want)
		}
	}
	// A milter that skips the rest of the body gets the end of message next.
	_, chunks, act := session(t, gomilter.OptSkip, true, nil, bytes.Repeat([]byte("x"), 3*BodyChunk))
	if act != nil || len(chunks) != 1 {
		t.Errorf("after a skip: chunks %v, action %v; want one chunk and the end of message", chunks, act)
	}
}

func TestFamily(t *testing.T) {
	for addr, want := range map[string]gomilter.ProtoFamily{"192.0.2.1": gomilter.FamilyInet,
		"::ffff:192.0.2.1": gomilter.FamilyInet, "2001:db8::1": gomilter.FamilyInet6} {
		if got := Family(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Family(%s) = %c, want %c", addr, got, want)
		}
	}
}
