package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// RESP2, the Redis protocol, as much as this client needs: commands are
// arrays of bulk strings; replies are simple strings (+), errors (-),
// integers (:), bulk strings ($, -1 for nil) and arrays (*, -1 for nil).
//
// Replies come from the network, so the reader trusts nothing: every line
// must end in CRLF, lengths are checked against limits before anything is
// allocated, and nesting is bounded. A reply that breaks a rule is a protocol
// error and the connection is dropped.

// Limits on what readReply accepts. Our values are addresses of at most a
// few hundred bytes; the limits leave room for anything else a Redis may
// answer to our commands (INFO in tests) and stop a broken or hostile peer
// from making us allocate much.
const (
	maxBulk       = 1 << 20 // bytes in one bulk string
	maxArrayElems = 1 << 12 // elements in one array
	maxReplyDepth = 8       // nested arrays
	maxLine       = 4096    // a +, -, :, $ or * line; also the reader's buffer size
)

// reply is one RESP2 reply.
type reply struct {
	kind  byte    // '+', '-', ':', '$' or '*'
	str   string  // '+', '-', '$'
	n     int64   // ':'
	null  bool    // '$' or '*' with length -1
	elems []reply // '*'
}

// errProtocol marks replies that break RESP2; the connection cannot be used
// after one.
var errProtocol = errors.New("redis protocol error")

func protoErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errProtocol}, a...)...)
}

// readReply reads one reply. br must have a buffer of at least maxLine bytes.
// The input ending before a reply starts is io.EOF; inside one,
// io.ErrUnexpectedEOF.
func readReply(br *bufio.Reader) (reply, error) {
	return readReplyDepth(br, 0)
}

func readReplyDepth(br *bufio.Reader, depth int) (reply, error) {
	line, err := readLine(br)
	if err == io.EOF && depth > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return reply{}, err
	}
	if len(line) == 0 {
		return reply{}, protoErr("empty line")
	}
	kind, body := line[0], line[1:]
	switch kind {
	case '+', '-':
		return reply{kind: kind, str: string(body)}, nil
	case ':':
		n, err := parseInt(body)
		if err != nil {
			return reply{}, err
		}
		return reply{kind: kind, n: n}, nil
	case '$':
		n, err := parseInt(body)
		switch {
		case err != nil:
			return reply{}, err
		case n == -1:
			return reply{kind: kind, null: true}, nil
		case n < 0 || n > maxBulk:
			return reply{}, protoErr("bulk length %d", n)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return reply{}, noEOF(err)
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return reply{}, protoErr("bulk string not followed by CRLF")
		}
		return reply{kind: kind, str: string(buf[:n])}, nil
	case '*':
		n, err := parseInt(body)
		switch {
		case err != nil:
			return reply{}, err
		case n == -1:
			return reply{kind: kind, null: true}, nil
		case n < 0 || n > maxArrayElems:
			return reply{}, protoErr("array length %d", n)
		case depth >= maxReplyDepth:
			return reply{}, protoErr("arrays nested deeper than %d", maxReplyDepth)
		}
		r := reply{kind: kind, elems: make([]reply, 0, min(n, 16))}
		for range n {
			e, err := readReplyDepth(br, depth+1)
			if err != nil {
				return reply{}, err
			}
			r.elems = append(r.elems, e)
		}
		return r, nil
	}
	return reply{}, protoErr("unknown reply type %q", kind)
}

// readLine returns a line without its CRLF; the slice is valid until the
// next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, protoErr("line longer than %d bytes", br.Size())
	case err == io.EOF && len(line) == 0:
		return nil, io.EOF // between replies: the peer closed
	case err != nil:
		return nil, noEOF(err)
	case len(line) < 2 || line[len(line)-2] != '\r':
		return nil, protoErr("line not ended by CRLF")
	}
	return line[:len(line)-2], nil
}

// parseInt reads a RESP integer as Redis writes it: an optional minus and
// decimal digits without leading zeros ("0", never "-0" or "007", nor the
// plus sign strconv.ParseInt alone would take).
func parseInt(b []byte) (int64, error) {
	digits := b
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(b) > 20 || digits[0] < '0' || digits[0] > '9' ||
		digits[0] == '0' && len(b) > 1 {
		return 0, protoErr("bad integer %q", b)
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, protoErr("bad integer %q", b)
	}
	return n, nil
}

// noEOF turns an EOF in the middle of a reply into io.ErrUnexpectedEOF, so
// that a connection closed by the server reads as what it is.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendCommand encodes a command as an array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}
