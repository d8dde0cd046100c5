package bmi

import (
	"bytes"
	"io"
	"regexp"
	"testing"
)

// go test -run - -bench . ./bmi/

func BenchmarkSpool(b *testing.B) {
	chunk := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), 1024) // 64 KB, as milter body chunks
	for _, c := range []struct {
		name     string
		size     int
		memLimit int64
	}{
		{"4KB", 4 << 10, 32 << 20},
		{"1MB", 1 << 20, 32 << 20},
		{"20MB", 20 << 20, 32 << 20},
		{"20MB_file", 20 << 20, 1 << 20},
	} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			b.SetBytes(int64(c.size))
			b.ReportAllocs()
			for b.Loop() {
				s := NewSpool(c.memLimit, dir)
				for left := c.size; left > 0; {
					n := min(left, len(chunk))
					s.Write(chunk[:n])
					left -= n
				}
				r, err := s.Reader()
				if err != nil {
					b.Fatal(err)
				}
				if n, _ := io.Copy(io.Discard, r); n != int64(c.size) {
					b.Fatalf("read %d", n)
				}
				s.Close()
			}
		})
	}
}

func BenchmarkEvaluate(b *testing.B) {
	rules := append(exampleRules(),
		Rule{ID: 6, When: Conditions{SymbolsAll: []string{"BAYES_99", "URIBL_BLACK"}}, Outcome: OutcomeDrop},
		Rule{ID: 7, When: Conditions{RecipientRegex: mustReB(b, `^postmaster@`)}, Outcome: OutcomeDeliver},
		Rule{ID: 8, When: Conditions{MarginAbove: ptr(10.0), OptinNone: []string{"keep-all"}}, Outcome: OutcomeDrop},
	)
	res := &ScanResult{Score: 8.2, Threshold: 5, IsSpam: true, Action: "add header", Backend: "rspamd",
		Symbols: []string{"ARC_NA", "BAYES_99", "DATE_IN_PAST", "FROM_NO_DN", "MIME_GOOD", "RCPT_COUNT_ONE", "R_SPF_FAIL", "URIBL_BLACK"}}
	rcpt := RcptInput{Addr: "Bob@Example.org", Optins: []string{"spam-high", "virus"}}
	b.ReportAllocs()
	for b.Loop() {
		v := Evaluate(rules, res, rcpt)
		if v.Rule == 0 {
			b.Fatal("nothing fired")
		}
	}
}

func BenchmarkEncodeVerdict(b *testing.B) {
	v := Verdict{Scanned: true, Deliver: true, Outcome: OutcomeAlternate, AltLocation: "header:X-Spam-Folder: Junk", Fired: []int{3, 6}, Rule: 3}
	res := &ScanResult{Score: 8.2, Threshold: 5, IsSpam: true, Action: "add header", Backend: "rspamd", Profile: "strict"}
	b.ReportAllocs()
	for b.Loop() {
		_ = EncodeVerdict(v, res)
		_ = v.Tracker()
	}
}

func mustReB(b *testing.B, expr string) *regexp.Regexp {
	re, err := CompileRecipientRegex(expr)
	if err != nil {
		b.Fatal(err)
	}
	return re
}
