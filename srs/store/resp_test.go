package store

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// appendReply encodes a reply the way Redis writes it: the inverse of
// readReply, for the round-trip checks.
func appendReply(b []byte, r reply) []byte {
	b = append(b, r.kind)
	switch r.kind {
	case '+', '-':
		b = append(b, r.str...)
	case ':':
		b = strconv.AppendInt(b, r.n, 10)
	case '$':
		if r.null {
			return append(b, "-1\r\n"...)
		}
		b = strconv.AppendInt(b, int64(len(r.str)), 10)
		b = append(b, "\r\n"...)
		b = append(b, r.str...)
	case '*':
		if r.null {
			return append(b, "-1\r\n"...)
		}
		b = strconv.AppendInt(b, int64(len(r.elems)), 10)
		b = append(b, "\r\n"...)
		for _, e := range r.elems {
			b = appendReply(b, e)
		}
		return b
	}
	return append(b, "\r\n"...)
}

func parseAll(data []byte) ([]reply, error) {
	br := bufio.NewReaderSize(bytes.NewReader(data), maxLine)
	var out []reply
	for {
		r, err := readReply(br)
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return out, err
		}
		out = append(out, r)
	}
}

func TestReadReply(t *testing.T) {
	good := []struct {
		in   string
		want reply
	}{
		{"+OK\r\n", reply{kind: '+', str: "OK"}},
		{"+\r\n", reply{kind: '+'}},
		{"-ERR unknown command\r\n", reply{kind: '-', str: "ERR unknown command"}},
		{":0\r\n", reply{kind: ':'}},
		{":-42\r\n", reply{kind: ':', n: -42}},
		{":9223372036854775807\r\n", reply{kind: ':', n: 1<<63 - 1}},
		{"$5\r\nhello\r\n", reply{kind: '$', str: "hello"}},
		{"$0\r\n\r\n", reply{kind: '$'}},
		{"$4\r\na\r\nb\r\n", reply{kind: '$', str: "a\r\nb"}},
		{"$-1\r\n", reply{kind: '$', null: true}},
		{"*-1\r\n", reply{kind: '*', null: true}},
		{"*0\r\n", reply{kind: '*', elems: []reply{}}},
		{"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", reply{kind: '*', elems: []reply{{kind: '$', str: "a"}, {kind: '*', elems: []reply{{kind: ':', n: 1}}}}}},
	}
	for _, c := range good {
		got, err := parseAll([]byte(c.in))
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], c.want) {
			t.Errorf("%q: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}

	bad := []string{
		"OK\r\n",                                                                        // no type
		"+OK\n",                                                                         // LF only
		"\r\n",                                                                          // empty
		":\r\n", ":1x\r\n", ":+1\r\n", ":-0\r\n", ":007\r\n", ":-\r\n", "*01\r\n:1\r\n", // bad integers
		":99999999999999999999\r\n", // overflow
		"$-2\r\n",
		"$5\r\nhell\r\n", // short
		"$5\r\nhelloXY",  // no CRLF after the data
		"$2000000\r\n",   // over maxBulk
		"*5000\r\n",      // over maxArrayElems
		"*1\r\n",         // truncated
		"$3\r\nab",       // truncated
		"+" + strings.Repeat("x", maxLine) + "\r\n", // line too long
		strings.Repeat("*1\r\n", maxReplyDepth+1) + ":1\r\n",
	}
	for _, in := range bad {
		got, err := parseAll([]byte(in))
		if err == nil {
			t.Errorf("%.40q: accepted as %+v", in, got)
		}
		if err == io.EOF {
			t.Errorf("%.40q: plain EOF in the middle of a reply", in)
		}
	}
	if _, err := parseAll([]byte(strings.Repeat("*1\r\n", maxReplyDepth) + ":1\r\n")); err != nil {
		t.Errorf("nesting at the limit: %v", err)
	}
}

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand(nil, "SET", "k", "", "PX", "1000"))
	want := "*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\nPX\r\n$4\r\n1000\r\n"
	if got != want {
		t.Errorf("appendCommand = %q, want %q", got, want)
	}
}

// FuzzRESP feeds arbitrary bytes to the reply reader, which reads what the
// network sends. It must never panic or allocate beyond its limits; what it
// accepts must encode back to something it reads the same; and it must stop
// with an error, never a plain EOF, on a reply cut short.
func FuzzRESP(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-WRONGPASS invalid username-password pair\r\n", ":1\r\n",
		"$-1\r\n", "$17\r\nuser@orig.example\r\n", "*2\r\n$1\r\na\r\n:-3\r\n",
		"*-1\r\n", "*1\r\n*1\r\n*0\r\n", "+PONG\r\n$3\r\nabc\r\n", "$2000000\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		replies, err := parseAll(data)
		if err != nil && !errors.Is(err, errProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%q: error %v is neither a protocol error nor a cut reply", data, err)
		}
		var enc []byte
		for _, r := range replies {
			enc = appendReply(enc, r)
		}
		again, err := parseAll(enc)
		if err != nil || len(again) != len(replies) {
			t.Fatalf("%q: re-encoded %q reads as %d replies, %v; want %d", data, enc, len(again), err, len(replies))
		}
		for i := range replies {
			if !equalReply(replies[i], again[i]) {
				t.Fatalf("%q: reply %d %+v re-reads as %+v", data, i, replies[i], again[i])
			}
		}
		// What was accepted was written exactly as Redis writes it: it
		// encodes back to the input's first bytes.
		if !bytes.HasPrefix(data, enc) {
			t.Fatalf("%q: accepted replies encode as %q, not a prefix", data, enc)
		}
	})
}

func equalReply(a, b reply) bool {
	if a.kind != b.kind || a.str != b.str || a.n != b.n || a.null != b.null || len(a.elems) != len(b.elems) {
		return false
	}
	for i := range a.elems {
		if !equalReply(a.elems[i], b.elems[i]) {
			return false
		}
	}
	return true
}
