package arc

import (
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/authres"
)

// Seeds live in testdata/fuzz/<Target>/ as well; run a target with e.g.
//   go test -run=- -fuzz=FuzzTagList ./arc/

func FuzzTagList(f *testing.F) {
	for _, s := range []string{
		" i=1; a=rsa-sha256; d=example.org; s=sel;\r\n\tb=abc\r\n\t def=;",
		"a=b;;c=d", "==", "v=DKIM1; p=", " x = y ; ", "a=\r\n", "a=\r\n b", "A_1=\x80\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := parseTagList(s)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, tg := range l {
			if seen[tg.name] || tg.name == "" || !isAlpha(tg.name[0]) {
				t.Fatalf("bad tag %q in %q", tg.name, s)
			}
			seen[tg.name] = true
			if tg.rawStart > tg.rawEnd || tg.rawEnd > len(s) {
				t.Fatalf("span %d..%d of %d", tg.rawStart, tg.rawEnd, len(s))
			}
			if strings.Trim(s[tg.rawStart:tg.rawEnd], " \t\r\n") != tg.value {
				t.Fatalf("value %q is not the trimmed span %q", tg.value, s[tg.rawStart:tg.rawEnd])
			}
			if strings.ContainsRune(tg.value, ';') {
				t.Fatalf("value %q holds a ';'", tg.value)
			}
		}
		// deleting a value (as for b=) leaves a parseable list
		for _, tg := range l {
			if _, err := parseTagList(s[:tg.rawStart] + s[tg.rawEnd:]); err != nil {
				t.Fatalf("%q without %s's value: %v", s, tg.name, err)
			}
		}
	})
}

func FuzzAuthResults(f *testing.F) {
	for _, s := range []string{
		" mx.example.org; spf=pass smtp.mailfrom=a@b; dkim=pass (1024-bit; key) header.d=x",
		` "q\"id" 1; none`, " (c(nested)) id;", "id", " i=1; mx; arc=pass", "i =1 ;x;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, rest, err := authres.Split(s)
		if err == nil {
			if id == "" {
				t.Fatalf("empty id from %q", s)
			}
			if id2, _ := authres.AuthServID(s); id2 != id {
				t.Fatalf("AuthServID disagrees: %q vs %q", id2, id)
			}
			rs, err := authres.SplitResults(rest)
			if err == nil {
				for _, r := range rs {
					if r == "" || r != strings.Trim(r, " \t\r\n") {
						t.Fatalf("result %q", r)
					}
				}
			}
		}
		parseAAR(s)
		aar := buildAAR(7, "mx.example.org", []string{s})
		if _, err := parseAAR(" " + aar); err != nil {
			t.Fatalf("built AAR %q does not parse: %v", aar, err)
		}
		for i := 0; i < len(aar); i++ {
			if aar[i] < ' ' && aar[i] != '\t' && aar[i] != '\r' && aar[i] != '\n' || aar[i] == 0x7f {
				t.Fatalf("AAR %q has a control character", aar)
			}
			if (aar[i] == '\r' && !strings.HasPrefix(aar[i:], "\r\n\t") && !strings.HasPrefix(aar[i:], "\r\n ")) ||
				(aar[i] == '\n' && (i == 0 || aar[i-1] != '\r')) {
				t.Fatalf("AAR %q has a line break that is not a fold", aar)
			}
		}
	})
}

// FuzzVerify feeds whole messages: whatever the ARC headers hold, the
// verifier and the sealer answer without panicking.
func FuzzVerify(f *testing.F) {
	res := mapResolver{}
	k := testKey(res, "ed1")
	hs, body := parseMessage(plainMessage)
	sealed := mustSealHop(f, res, hs, body, k, t0, nil)
	f.Add(formatMessage(sealed, body))
	f.Add("ARC-Seal: i=1; cv=none\r\nARC-Message-Signature: i=1; h=from; c=simple; l=3\r\n\r\nx")
	f.Add("ARC-Authentication-Results: i=50; x;\r\nARC-Seal: i=2\r\n\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		hs, body := parseMessage(msg)
		now := func() time.Time { return t0 }
		v, r := verifyMessage(VerifyOptions{Resolver: res, Now: now}, hs, body, 11)
		if r.State == StatePass && len(hs) > 0 && !strings.Contains(msg, "ARC-") && !strings.Contains(strings.ToLower(msg), "arc-") {
			t.Fatalf("pass without ARC headers")
		}
		set, err := v.Seal(SealOptions{Key: k, AuthServID: "mx.example.org", Now: now}, hs, nil)
		if err == nil && len(set) != 3 {
			t.Fatalf("set of %d", len(set))
		}
	})
}
