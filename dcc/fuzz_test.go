package dcc

import (
	"github.com/tollgate/tollgate/dcc/dcctest"

	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzParseReply feeds arbitrary replies for up to 255 recipients. The
// parser must never panic, must label every failure with one of dccifd's
// failure kinds, must give the same answer however the bytes arrive, and
// whatever it accepts must be a reply dccifd could send, with a header safe
// to add to a message that refolds and unfolds to itself. The seeds are in
// testdata/fuzz/FuzzParseReply.
func FuzzParseReply(f *testing.F) {
	f.Add([]byte("A\nAA\nX-DCC-x-Metrics: h 1; Body=1\n\n"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		nr := int(n)
		res, err := ParseReply(bytes.NewReader(data), nr)
		res2, err2 := ParseReply(iotest.OneByteReader(bytes.NewReader(data)), nr)
		if (err == nil) != (err2 == nil) || Kind(err) != Kind(err2) {
			t.Fatalf("whole: %v; byte by byte: %v", err, err2)
		}
		if err != nil {
			if res != nil {
				t.Fatalf("result %+v with error %v", res, err)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("unlabelled error %v (kind %s)", err, Kind(err))
			}
			return
		}
		if res.String() != res2.String() || res.Header != res2.Header {
			t.Fatalf("whole %+v; byte by byte %+v", res, res2)
		}
		if !strings.ContainsRune("ARGTS", rune(res.Overall)) || res.Verdict != VerdictOf(res.Overall) {
			t.Fatalf("overall %q verdict %s", res.Overall, res.Verdict)
		}
		if len(res.Rcpts) != nr && !(res.Overall == 'T' && len(res.Rcpts) == 0) {
			t.Fatalf("%d letters for %d recipients", len(res.Rcpts), nr)
		}
		for _, c := range res.Rcpts {
			if c != 'A' && c != 'R' && c != 'G' {
				t.Fatalf("recipient letter %q", c)
			}
		}
		if res.Header == "" {
			return
		}
		if len(res.Header) > MaxHeaderLen || !strings.HasPrefix(strings.ToUpper(res.Header), "X-DCC-") {
			t.Fatalf("header %q", res.Header)
		}
		for i := 0; i < len(res.Header); i++ {
			if c := res.Header[i]; c < ' ' || c >= 127 {
				t.Fatalf("byte %#02x in header %q", c, res.Header)
			}
		}
		name, value := res.HeaderName(), res.HeaderValue()
		if strings.ContainsAny(name, " \t") || name+":"+map[bool]string{true: " ", false: ""}[value != ""]+value != res.Header {
			t.Fatalf("header %q splits into %q and %q", res.Header, name, value)
		}
		folded := FoldHeader(name, value, 78)
		if got := strings.ReplaceAll(folded, "\n\t", " "); got != value {
			t.Fatalf("FoldHeader(%q) = %q unfolds to %q", value, folded, got)
		}
		// Folded as dccifd folds its own header, byte for byte: the stand-in
		// plays dccifd's buffer, this package folds from the words.
		if value != "" && name+": "+folded+"\n" != dcctest.Fold(name+": "+value) {
			t.Fatalf("FoldHeader %q\ndccifd     %q", name+": "+folded+"\n", dcctest.Fold(name+": "+value))
		}
	})
}
