package bmi

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Spool holds a message for a scanner that needs its length first (spamd's
// Content-length, rspamd's Content-Length): in memory up to the memory limit,
// then in a temp file. The temp file is unlinked as soon as it is created, so
// it never outlives the process (not even a kill -9) and nothing is left in
// the directory; Close releases its space. Close is always safe to call,
// also after a failed Write, and more than once.
//
// Write everything first, then read: Reader and Message may be called any
// number of times and their readers used concurrently (they read with
// ReadAt), but not while writing.
type Spool struct {
	memLimit int64
	dir      string
	maxSize  int64 // 0: no limit

	blocks memBlocks // in memory: blocks of spoolBlock bytes, the last one filling up
	file   *os.File
	size   int64 // bytes written so far (all held in buf or file unless Overflow)
	err    error // sticky write error
	closed bool
}

// NewSpool returns a spool that keeps up to memLimit bytes in memory and
// spills to a temp file in dir beyond that ("" is the system temp dir;
// memLimit <= 0 spills at the first byte).
func NewSpool(memLimit int64, dir string) *Spool {
	return &Spool{memLimit: memLimit, dir: dir}
}

// SetMaxSize makes the spool stop storing beyond n bytes (n <= 0: no limit).
// Writes still succeed and Size still counts; Overflow reports it and Reader
// refuses. A message that will not be scanned is then never written to disk.
func (s *Spool) SetMaxSize(n int64) { s.maxSize = n }

// Write appends p. After a failure every later Write returns the same error.
func (s *Spool) Write(p []byte) (int, error) {
	if s.closed {
		return 0, errClosed
	}
	if s.err != nil {
		return 0, s.err
	}
	n := len(p)
	s.size += int64(n)
	if s.maxSize > 0 && s.size > s.maxSize {
		s.release() // nothing stored is of use any more
		return n, nil
	}
	if s.file == nil && s.size <= s.memLimit {
		s.blocks.write(p)
		return n, nil
	}
	if s.file == nil {
		if err := s.spill(); err != nil {
			s.err = err
			return 0, err
		}
	}
	if _, err := s.file.Write(p); err != nil {
		s.err = fmt.Errorf("bmi: spool: %w", err)
		return 0, s.err
	}
	return n, nil
}

// spill moves what is in memory to a new, already unlinked, temp file.
func (s *Spool) spill() error {
	f, err := os.CreateTemp(s.dir, "tollgate-bmi-*.msg")
	if err != nil {
		return fmt.Errorf("bmi: spool: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("bmi: spool: unlinking the temp file: %w", err)
	}
	s.file = f
	for _, b := range s.blocks {
		if _, err := f.Write(b); err != nil {
			return fmt.Errorf("bmi: spool: %w", err)
		}
	}
	s.blocks = nil
	return nil
}

// release drops what is stored (the message went over the max size).
func (s *Spool) release() {
	s.blocks = nil
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// Size is the number of bytes written, stored or not.
func (s *Spool) Size() int64 { return s.size }

// Overflow reports whether more than the max size was written.
func (s *Spool) Overflow() bool { return s.maxSize > 0 && s.size > s.maxSize }

// OnDisk reports whether the message went past the memory limit into a temp file.
func (s *Spool) OnDisk() bool { return s.file != nil }

// Reader returns a reader over the whole message, from its start.
func (s *Spool) Reader() (io.ReadSeeker, error) {
	r, _, err := s.Message(nil)
	return r, err
}

// Message returns a reader over header followed by the spooled bytes, and
// its length. The milter spools the body as it streams in and puts the
// header block (as it stands at end of message, with its blank line) in
// front of it here.
func (s *Spool) Message(header []byte) (io.ReadSeeker, int64, error) {
	switch {
	case s.closed:
		return nil, 0, errClosed
	case s.err != nil:
		return nil, 0, s.err
	case s.Overflow():
		return nil, 0, newErr(KindTooBig, fmt.Errorf("%w: %d bytes, limit %d", ErrTooBig, s.size, s.maxSize))
	}
	var body io.ReaderAt = s.blocks
	if s.file != nil {
		body = s.file
	}
	return &catReader{head: header, body: body, bodySize: s.size}, int64(len(header)) + s.size, nil
}

// Close releases the memory and closes (and so frees) the temp file.
func (s *Spool) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.blocks = nil
	if s.file != nil {
		err := s.file.Close()
		s.file = nil
		if err != nil {
			return fmt.Errorf("bmi: spool: %w", err)
		}
	}
	return nil
}

// spoolBlock is the size of the memory blocks: a message in memory is never
// copied to grow (20 MB in one slice would be copied about 25 times).
const spoolBlock = 64 << 10

// memBlocks holds bytes in blocks of spoolBlock; every block but the last is full.
type memBlocks [][]byte

func (m *memBlocks) write(p []byte) {
	for len(p) > 0 {
		last := len(*m) - 1
		if last < 0 || len((*m)[last]) == spoolBlock {
			// The first block grows with the message (small messages stay
			// small); the others are allocated whole.
			c := 0
			if last >= 0 {
				c = spoolBlock
			}
			*m = append(*m, make([]byte, 0, c))
			last++
		}
		b := (*m)[last]
		k := min(len(p), spoolBlock-len(b))
		(*m)[last] = append(b, p[:k]...)
		p = p[k:]
	}
}

func (m memBlocks) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for len(p) > 0 {
		i, j := int(off/spoolBlock), int(off%spoolBlock)
		if i >= len(m) || j >= len(m[i]) {
			return n, io.EOF
		}
		k := copy(p, m[i][j:])
		n += k
		p = p[k:]
		off += int64(k)
	}
	return n, nil
}

// catReader reads head then body; each one keeps its own offset, so several
// can read one spool at once.
type catReader struct {
	head     []byte
	body     io.ReaderAt
	bodySize int64
	off      int64
}

func (c *catReader) size() int64 { return int64(len(c.head)) + c.bodySize }

func (c *catReader) Read(p []byte) (int, error) {
	n, err := c.ReadAt(p, c.off)
	c.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (c *catReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("bmi: negative offset")
	}
	if off >= c.size() {
		return 0, io.EOF
	}
	n := 0
	if off < int64(len(c.head)) {
		n = copy(p, c.head[off:])
		off += int64(n)
		p = p[n:]
	}
	if len(p) == 0 {
		return n, nil
	}
	boff := off - int64(len(c.head))
	if rest := c.bodySize - boff; int64(len(p)) > rest {
		p = p[:rest]
	}
	m, err := c.body.ReadAt(p, boff)
	n += m
	if err == io.EOF && m == len(p) {
		err = nil
	}
	if err == nil && off+int64(m) >= c.size() {
		err = io.EOF
	}
	return n, err
}

func (c *catReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += c.off
	case io.SeekEnd:
		offset += c.size()
	default:
		return 0, errors.New("bmi: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("bmi: negative position")
	}
	c.off = offset
	return offset, nil
}
