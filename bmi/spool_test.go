package bmi

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func readAll(t *testing.T, r io.ReadSeeker) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSpoolMemory(t *testing.T) {
	dir := t.TempDir()
	s := NewSpool(1024, dir)
	defer s.Close()
	msg := bytes.Repeat([]byte("0123456789abcdef"), 64) // exactly 1024
	for i := 0; i < len(msg); i += 100 {
		s.Write(msg[i:min(i+100, len(msg))])
	}
	if s.Size() != 1024 || s.OnDisk() {
		t.Fatalf("size %d, on disk %v", s.Size(), s.OnDisk())
	}
	r, err := s.Reader()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, r), msg) {
		t.Error("content differs")
	}
	if n := dirEntries(t, dir); len(n) != 0 {
		t.Errorf("files in the spool dir: %v", n)
	}

	// Many memory blocks, written in odd sizes, read across their edges.
	big := make([]byte, 3*spoolBlock+12345)
	for i := range big {
		big[i] = byte(i * 7)
	}
	s2 := NewSpool(int64(len(big)), dir)
	defer s2.Close()
	for i := 0; i < len(big); i += 7777 {
		s2.Write(big[i:min(i+7777, len(big))])
	}
	if s2.OnDisk() {
		t.Fatal("spilled within the limit")
	}
	hdr := []byte("H: v\r\n\r\n")
	r, size, err := s2.Message(hdr)
	if err != nil || size != int64(len(big)+len(hdr)) {
		t.Fatal(size, err)
	}
	if got := readAll(t, r); !bytes.Equal(got[len(hdr):], big) {
		t.Error("content differs")
	}
	for _, off := range []int64{0, spoolBlock - 3, 2*spoolBlock + 5, int64(len(big)) - 4} {
		r.Seek(off+int64(len(hdr)), io.SeekStart)
		b := make([]byte, 8)
		n, _ := io.ReadFull(r, b)
		if !bytes.Equal(b[:n], big[off:min(off+8, int64(len(big)))]) {
			t.Errorf("at %d: %x", off, b[:n])
		}
	}
}

func TestSpoolFileBeyondLimit(t *testing.T) {
	dir := t.TempDir()
	s := NewSpool(1000, dir)
	msg := bytes.Repeat([]byte("line of the message\r\n"), 500) // 10.5 KB
	for i := 0; i < len(msg); i += 333 {
		if _, err := s.Write(msg[i:min(i+333, len(msg))]); err != nil {
			t.Fatal(err)
		}
	}
	if !s.OnDisk() || s.Size() != int64(len(msg)) {
		t.Fatalf("on disk %v, size %d", s.OnDisk(), s.Size())
	}
	// The temp file is unlinked at once: nothing is ever left behind.
	if n := dirEntries(t, dir); len(n) != 0 {
		t.Errorf("files in the spool dir: %v", n)
	}
	head := []byte("X-Header: 1\r\n\r\n")
	r, size, err := s.Message(head)
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(head)+len(msg)) || !bytes.Equal(readAll(t, r), append(append([]byte{}, head...), msg...)) {
		t.Error("content differs")
	}
	// Readers are independent, and can be rewound.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := s.Reader()
			b, _ := io.ReadAll(r)
			if !bytes.Equal(b, msg) {
				t.Error("concurrent reader differs")
			}
		}()
	}
	wg.Wait()
	r.Seek(5, io.SeekStart)
	b := make([]byte, 10)
	if n, _ := io.ReadFull(r, b); n != 10 || string(b) != string(append(head, msg...)[5:15]) {
		t.Errorf("after Seek: %q", b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Error("second Close:", err)
	}
	if _, err := s.Reader(); err == nil {
		t.Error("Reader after Close")
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Error("Write after Close")
	}
}

// A write error (here: the spool dir does not exist) is sticky and Close
// still cleans up.
func TestSpoolErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	s := NewSpool(10, dir)
	if _, err := s.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	_, err := s.Write([]byte("6789012345"))
	if err == nil || !strings.HasPrefix(err.Error(), "bmi: spool") {
		t.Fatalf("spill into a missing dir: %v", err)
	}
	if _, err2 := s.Write([]byte("x")); err2 == nil {
		t.Error("the error is not sticky")
	}
	if _, err := s.Reader(); err == nil {
		t.Error("Reader after a failed write")
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}

	// A failure after the spill: the file is closed and gone all the same.
	dir = t.TempDir()
	s = NewSpool(0, dir)
	s.Write([]byte("abc"))
	s.file.Close() // the next write fails
	if _, err := s.Write([]byte("def")); err == nil {
		t.Fatal("write to a closed file")
	}
	s.Close()
	if n := dirEntries(t, dir); len(n) != 0 {
		t.Errorf("files left: %v", n)
	}
}

func TestSpoolMaxSize(t *testing.T) {
	dir := t.TempDir()
	s := NewSpool(10, dir)
	s.SetMaxSize(50)
	defer s.Close()
	s.Write(bytes.Repeat([]byte("a"), 50))
	if s.Overflow() {
		t.Fatal("overflow at the limit")
	}
	if r, err := s.Reader(); err != nil || len(readAll(t, r)) != 50 {
		t.Fatal(err)
	}
	n, err := s.Write(bytes.Repeat([]byte("b"), 1000))
	if n != 1000 || err != nil {
		t.Fatalf("write past the limit: %d, %v", n, err)
	}
	if !s.Overflow() || s.Size() != 1050 || s.OnDisk() {
		t.Errorf("overflow %v, size %d, on disk %v", s.Overflow(), s.Size(), s.OnDisk())
	}
	if _, err := s.Reader(); Kind(err) != KindTooBig {
		t.Errorf("Reader past the limit: %v", err)
	}
}

func TestCopyExactly(t *testing.T) {
	var out bytes.Buffer
	if err := copyExactly(&out, bytes.NewReader([]byte("hello")), 5); err != nil || out.String() != "hello" {
		t.Fatal(err)
	}
	r := bytes.NewReader([]byte("hello"))
	r.Seek(3, io.SeekStart) // rewound first
	out.Reset()
	if err := copyExactly(&out, r, 5); err != nil || out.String() != "hello" {
		t.Fatal(err, out.String())
	}
	for _, c := range []struct {
		data string
		size int64
	}{{"", 0}, {"hello", 6}, {"hello", 4}} {
		if err := copyExactly(io.Discard, bytes.NewReader([]byte(c.data)), c.size); err == nil {
			t.Errorf("%q as %d bytes: no error", c.data, c.size)
		}
	}
}
