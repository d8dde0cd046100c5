package srs

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The vectors' parameters (testdata/vectors/README.md).
const (
	vecDomain = "fwd.example"
	vecNew    = "tops3cr3t"
	vecOld    = "olds3cr3t"
)

const vectorsFile = "testdata/vectors/forward_vectors.tsv"

// t0 is a vector row's clock: day 19737, stamp IZ.
var t0 = time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)

func at(tm time.Time) func() time.Time { return func() time.Time { return tm } }

// vecOptions are the vectors' parameters with the clock at tm.
func vecOptions(tm time.Time) Options {
	return Options{Domain: vecDomain, Secrets: []string{vecNew, vecOld}, HashLength: 4, MaxAge: 21 * Day, Now: at(tm)}
}

func mustNew(t testing.TB, o Options) *SRS {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// firstHopSRS0 is what reversing our SRS1 for an SRS0 or SRS1 sender must give,
// worked out independently of the package: for SRS0 the sender itself (tag
// upper-cased), for SRS1 "SRS0" + what follows its first hop, at that hop.
func firstHopSRS0(t testing.TB, sender string) string {
	t.Helper()
	local, domain, _ := strings.Cut(sender, "@")
	switch strings.ToUpper(local[:4]) {
	case "SRS0":
		return "SRS0" + local[4:] + "@" + domain
	case "SRS1":
		f := strings.SplitN(local[5:], "=", 3)
		return "SRS0" + f[2] + "@" + f[1]
	}
	t.Fatalf("%q is not SRS", sender)
	return ""
}

type vector struct {
	line     int
	when     time.Time
	sender   string
	expected string
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open(vectorsFile)
	if err != nil {
		abs, _ := filepath.Abs(vectorsFile)
		t.Fatalf("SRS test vectors missing (%s): %v", abs, err)
	}
	defer f.Close()
	var vs []vector
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 4 {
			t.Fatalf("%s:%d: %d columns", vectorsFile, n, len(cols))
		}
		if cols[0] != "SAME" {
			t.Fatalf("%s:%d: implementations disagree (%s)", vectorsFile, n, cols[0])
		}
		when, err := time.Parse(time.DateTime, cols[1])
		if err != nil {
			t.Fatalf("%s:%d: %v", vectorsFile, n, err)
		}
		v := vector{line: n, when: when, sender: cols[2]}
		for _, c := range cols[3:] {
			name, val, ok := strings.Cut(c, "=")
			if !ok {
				t.Fatalf("%s:%d: column %q", vectorsFile, n, c)
			}
			if name == "postsrsd" {
				val = strings.TrimPrefix(val, "200 ")
			}
			if v.expected == "" {
				v.expected = val
			} else if val != v.expected {
				t.Fatalf("%s:%d: %s says %q, others %q", vectorsFile, n, name, val, v.expected)
			}
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(vs) < 30 {
		t.Fatalf("%s: only %d vectors", vectorsFile, len(vs))
	}
	return vs
}

func TestForwardVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		s := mustNew(t, vecOptions(v.when))
		got, err := s.Forward(v.sender)
		if err != nil || got != v.expected {
			t.Errorf("line %d, %s: Forward(%q) = %q, %v; want %q", v.line, v.when, v.sender, got, err, v.expected)
			continue
		}
		want := v.sender
		if IsSRS(v.sender) {
			want = firstHopSRS0(t, v.sender)
		}
		back, err := s.Reverse(got)
		if err != nil || back != want {
			t.Errorf("line %d: Reverse(%q) = %q, %v; want %q", v.line, got, back, err, want)
		}
		// Still valid on the last day of max_age, for the old secret too.
		later := mustNew(t, Options{Domain: vecDomain, Secrets: []string{"another", vecNew}, HashLength: 4, MaxAge: 21 * Day, Now: at(v.when.Add(21 * Day))})
		if back, err := later.Reverse(got); err != nil || back != want {
			t.Errorf("line %d: 21 days later, with the secret second: Reverse(%q) = %q, %v", v.line, got, back, err)
		}
	}
}

// A signed address and what it reverses to, at t0 with the vectors' options.
const (
	plainSRS  = "SRS0=W+Uy=IZ=orig.example=user@fwd.example"
	mixedSRS  = "SRS0=J8pY=IZ=Orig.EXAMPLE=User.Name@fwd.example"
	srs1Addr  = "SRS1=PvO7=hop1.example==Ak0K=JK=orig.example=alice@fwd.example"
	srs1Orig  = "SRS0=Ak0K=JK=orig.example=alice@hop1.example"
	stampIZ   = "IZ"
	dayOfIZ   = 19737 // 2024-01-15
	dayOfIZ21 = dayOfIZ + 21
)

func dayStart(d int) time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

func TestReverse(t *testing.T) {
	if got := makeStamp(dayOfIZ); got != stampIZ || !t0.Equal(dayStart(dayOfIZ).Add(12*time.Hour)) {
		t.Fatalf("test constants are off: %s %v", got, dayStart(dayOfIZ))
	}
	onlyOld := Options{Domain: vecDomain, Secrets: []string{vecOld}, HashLength: 4, MaxAge: 21 * Day, Now: at(t0)}
	oldSigned, err := mustNew(t, onlyOld).Forward("user@orig.example")
	if err != nil {
		t.Fatal(err)
	}
	hash6, err := mustNew(t, Options{Domain: vecDomain, Secrets: []string{vecNew}, HashLength: 6, Now: at(t0)}).Forward("user@orig.example")
	if err != nil {
		t.Fatal(err)
	}
	// Forwarded on the day whose stamp is 77 (day 1023 of the cycle) and on
	// day 1017 (7Z), to cross the wrap back to AA.
	wrapSigner := func(tm time.Time) string {
		a, err := mustNew(t, vecOptions(tm)).Forward("user@orig.example")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	day77 := 20479 // 2026-01-26, 20479 % 1024 == 1023
	signed77 := wrapSigner(dayStart(day77))
	signed7Z := wrapSigner(dayStart(day77 - 6).Add(23 * time.Hour))
	if !strings.Contains(signed77, "=77=") || !strings.Contains(signed7Z, "=7Z=") {
		t.Fatalf("wrap stamps: %s %s", signed77, signed7Z)
	}

	no := new(false)
	tests := []struct {
		name string
		addr string
		now  time.Time
		opts func(*Options)
		want string
		err  error
	}{
		{name: "plain", addr: plainSRS, want: "user@orig.example"},
		{name: "mixed case kept", addr: mixedSRS, want: "User.Name@Orig.EXAMPLE"},
		{name: "lower-cased by an MTA", addr: strings.ToLower(mixedSRS), want: "user.name@orig.example"},
		{name: "upper-cased by an MTA", addr: strings.ToUpper(mixedSRS), want: "USER.NAME@ORIG.EXAMPLE"},
		{name: "lower-case tag", addr: "srs0" + plainSRS[4:], want: "user@orig.example"},
		{name: "hash case flipped", addr: "SRS0=w+uY=IZ=orig.example=user@fwd.example", want: "user@orig.example"},
		{name: "separator +", addr: "SRS0+" + plainSRS[5:], want: "user@orig.example"},
		{name: "separator -", addr: "SRS0-" + plainSRS[5:], want: "user@orig.example"},
		{name: "other domain ignored", addr: strings.TrimSuffix(plainSRS, "fwd.example") + "elsewhere.example", want: "user@orig.example"},
		{name: "no domain", addr: strings.TrimSuffix(plainSRS, "@fwd.example"), want: "user@orig.example"},
		{name: "signed by the old secret", addr: oldSigned, want: "user@orig.example"},
		{name: "signed by the old secret, now unknown", addr: oldSigned, opts: func(o *Options) { o.Secrets = o.Secrets[:1] }, err: ErrBadHash},

		{name: "hash too short", addr: "SRS0=W+U=IZ=orig.example=user@fwd.example", err: ErrHashTooShort},
		{name: "hash empty", addr: "SRS0==IZ=orig.example=user@fwd.example", err: ErrHashTooShort},
		{name: "shorter hash at hash_min", addr: "SRS0=" + hash6[5:9] + hash6[11:], opts: func(o *Options) { o.HashLength, o.HashMin = 6, 4 }, want: "user@orig.example"},
		{name: "shorter hash below hash_min", addr: "SRS0=" + hash6[5:9] + hash6[11:], opts: func(o *Options) { o.HashLength, o.HashMin = 6, 5 }, err: ErrHashTooShort},
		{name: "shorter hash wrong", addr: "SRS0=W+Uz" + hash6[11:], opts: func(o *Options) { o.HashLength, o.HashMin = 6, 4 }, err: ErrBadHash},
		{name: "junk after a valid hash", addr: "SRS0=W+UyJUNK=IZ=orig.example=user@fwd.example", want: "user@orig.example"},
		{name: "wrong hash", addr: "SRS0=W+Uz=IZ=orig.example=user@fwd.example", err: ErrBadHash},
		{name: "junk before the hash", addr: "SRS0=XW+Uy=IZ=orig.example=user@fwd.example", err: ErrBadHash},
		{name: "local part changed", addr: "SRS0=W+Uy=IZ=orig.example=admin@fwd.example", err: ErrBadHash},
		{name: "domain changed", addr: "SRS0=W+Uy=IZ=evil.example=user@fwd.example", err: ErrBadHash},
		{name: "stamp changed", addr: "SRS0=W+Uy=IY=orig.example=user@fwd.example", err: ErrBadHash},
		// The hash covers the fields' concatenation, not their boundaries, in
		// every implementation. Harmless: whoever can get mail forwarded can
		// get the shifted sender signed directly.
		{name: "field boundary moved is not covered", addr: "SRS0=W+Uy=IZ=orig.exampleu=ser@fwd.example", want: "ser@orig.exampleu"},

		{name: "stamp exactly max_age old", addr: plainSRS, now: dayStart(dayOfIZ21 + 1).Add(-time.Second), want: "user@orig.example"},
		{name: "stamp one day more", addr: plainSRS, now: dayStart(dayOfIZ21 + 1), err: ErrExpired},
		{name: "stamp from tomorrow", addr: plainSRS, now: dayStart(dayOfIZ - 1), err: ErrExpired},
		{name: "expired but use_timestamp off", addr: plainSRS, now: dayStart(dayOfIZ + 400), opts: func(o *Options) { o.UseTimestamp = no }, want: "user@orig.example"},
		{name: "stamp valid again after 1024 days", addr: plainSRS, now: dayStart(dayOfIZ + 1024 + 3), want: "user@orig.example"},
		{name: "stamp lower case", addr: "SRS0=W+Uy=iz=orig.example=user@fwd.example", want: "user@orig.example"},
		{name: "stamp letter 1", addr: "SRS0=W+Uy=I1=orig.example=user@fwd.example", err: ErrBadStamp},
		{name: "stamp letter 8", addr: "SRS0=W+Uy=8Z=orig.example=user@fwd.example", err: ErrBadStamp},
		{name: "stamp punctuation", addr: "SRS0=W+Uy=I.=orig.example=user@fwd.example", err: ErrBadStamp},
		{name: "stamp one letter", addr: "SRS0=W+Uy=Z=orig.example=user@fwd.example", err: ErrBadStamp},
		{name: "stamp three letters", addr: "SRS0=W+Uy=AIZ=orig.example=user@fwd.example", err: ErrBadStamp},
		{name: "stamp empty", addr: "SRS0=W+Uy==orig.example=user@fwd.example", err: ErrBadStamp},
		{name: "bad stamp even with use_timestamp off", addr: "SRS0=W+Uy=I1=orig.example=user@fwd.example", opts: func(o *Options) { o.UseTimestamp = no }, err: ErrBadStamp},
		{name: "wrap: 77 read on AA", addr: signed77, now: dayStart(day77 + 1), want: "user@orig.example"},
		{name: "wrap: 77 read max_age later", addr: signed77, now: dayStart(day77 + 21), want: "user@orig.example"},
		{name: "wrap: 77 read one day more", addr: signed77, now: dayStart(day77 + 22), err: ErrExpired},
		{name: "wrap: 7Z read on AO", addr: signed7Z, now: dayStart(day77 - 6 + 21), want: "user@orig.example"},
		{name: "wrap: 7Z read on AP", addr: signed7Z, now: dayStart(day77 - 6 + 22), err: ErrExpired},

		{name: "SRS1 to the first hop's SRS0", addr: srs1Addr, want: srs1Orig},
		{name: "SRS1 lower-cased", addr: strings.ToLower(srs1Addr), want: strings.ToUpper(srs1Orig[:4]) + strings.ToLower(srs1Orig[4:])},
		{name: "SRS1 has no stamp of ours to check", addr: srs1Addr, now: dayStart(dayOfIZ + 500), want: srs1Orig},
		{name: "SRS1 separator +", addr: "SRS1+" + srs1Addr[5:], want: srs1Orig},
		{name: "SRS1 wrong hash", addr: "SRS1=PvO8=hop1.example==Ak0K=JK=orig.example=alice@fwd.example", err: ErrBadHash},
		{name: "SRS1 hop changed", addr: "SRS1=PvO7=hop2.example==Ak0K=JK=orig.example=alice@fwd.example", err: ErrBadHash},
		{name: "SRS1 hash too short", addr: "SRS1=PvO=hop1.example==Ak0K=JK=orig.example=alice@fwd.example", err: ErrHashTooShort},
		{name: "SRS1 without hop", addr: "SRS1=PvO7@fwd.example", err: ErrBadFormat},
		{name: "SRS1 empty hop", addr: "SRS1=PvO7===Ak0K=JK=orig.example=alice@fwd.example", err: ErrBadFormat},
		{name: "SRS1 without rest", addr: "SRS1=PvO7=hop1.example@fwd.example", err: ErrBadFormat},
		{name: "SRS1 rest not SRS0", addr: "SRS1=PvO7=hop1.example=Ak0K=JK=orig.example=alice@fwd.example", err: ErrBadFormat},

		{name: "unknown separator _", addr: "SRS0_W+Uy=IZ=orig.example=user@fwd.example", err: ErrUnknownSeparator},
		{name: "unknown separator .", addr: "srs1.PvO7=hop1.example==Ak0K=JK=orig.example=alice@fwd.example", err: ErrUnknownSeparator},
		{name: "not SRS", addr: "user@fwd.example", err: ErrNotSRS},
		{name: "not SRS: bare tag", addr: "SRS0@fwd.example", err: ErrNotSRS},
		{name: "not SRS: SRS2", addr: "SRS2=W+Uy=IZ=orig.example=user@fwd.example", err: ErrNotSRS},
		{name: "not SRS: angle brackets", addr: "<" + plainSRS + ">", err: ErrNotSRS},
		{name: "not SRS: empty", addr: "", err: ErrNotSRS},
		{name: "SRS0 without fields", addr: "SRS0=W+Uy=IZ@fwd.example", err: ErrBadFormat},
		{name: "SRS0 empty domain", addr: "SRS0=W+Uy=IZ==user@fwd.example", err: ErrBadFormat},
		{name: "SRS0 empty local part", addr: "SRS0=W+Uy=IZ=orig.example=@fwd.example", err: ErrBadFormat},
		{name: "SRS0 nothing after the tag", addr: "SRS0=@fwd.example", err: ErrBadFormat},
		{name: "@ in the local part", addr: "SRS0=W+Uy=IZ=orig.example=us@er@fwd.example", err: ErrBadFormat},

		{name: "use_hash off: wrong hash", addr: "SRS0=AAAA=IZ=orig.example=user@fwd.example", opts: func(o *Options) { o.UseHash = no }, want: "user@orig.example"},
		{name: "use_hash off: no hash", addr: "SRS0==IZ=orig.example=user@fwd.example", opts: func(o *Options) { o.UseHash = no }, want: "user@orig.example"},
		{name: "use_hash off: still expires", addr: "SRS0=AAAA=IZ=orig.example=user@fwd.example", now: dayStart(dayOfIZ21 + 1), opts: func(o *Options) { o.UseHash = no }, err: ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			o := vecOptions(now)
			if tc.opts != nil {
				tc.opts(&o)
			}
			got, err := mustNew(t, o).Reverse(tc.addr)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Reverse(%q) = %q, %v; want %v", tc.addr, got, err, tc.err)
				}
				if got != "" {
					t.Errorf("Reverse(%q) returned %q with its error", tc.addr, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Reverse(%q) = %q, %v; want %q", tc.addr, got, err, tc.want)
			}
		})
	}
}

func TestForward(t *testing.T) {
	s := mustNew(t, vecOptions(t0))
	tests := []struct {
		name   string
		sender string
		opts   func(*Options)
		want   string
		back   string // what Reverse gives; "" = the sender
		err    error
	}{
		{name: "plain", sender: "user@orig.example", want: plainSRS},
		{name: "= in local part", sender: "a=b@orig.example", want: "SRS0=2LHZ=IZ=orig.example=a=b@fwd.example"},
		{name: "+ in local part", sender: "x+tag@sub.orig.example", want: "SRS0=ymAB=IZ=sub.orig.example=x+tag@fwd.example"},
		{name: "quoted local part kept byte for byte", sender: `"john smith"@orig.example`},
		{name: "UTF-8 local part", sender: "JÖrg@Orig.example"},
		{name: "separator +", sender: "user@orig.example", opts: func(o *Options) { o.Separator = '+' }, want: "SRS0+W+Uy=IZ=orig.example=user@fwd.example"},
		{name: "separator -", sender: "user@orig.example", opts: func(o *Options) { o.Separator = '-' }, want: "SRS0-W+Uy=IZ=orig.example=user@fwd.example"},
		{name: "SRS0 becomes SRS1", sender: "SRS0=Ak0K=JK=orig.example=alice@hop1.example", want: srs1Addr},
		{name: "srs0 in lower case", sender: "srs0=Ak0K=JK=orig.example=alice@hop1.example", want: srs1Addr, back: srs1Orig},
		{name: "SRS0 with + becomes SRS1 keeping it", sender: "SRS0+Ak0K=JK=orig.example=alice@hop1.example"},
		{name: "SRS1 separator + keeps the rest's =", sender: "SRS0=Ak0K=JK=orig.example=alice@hop1.example", opts: func(o *Options) { o.Separator = '+' }, want: "SRS1+" + srs1Addr[5:]},
		{name: "SRS1 re-signed, first hop kept", sender: "SRS1=UuHG=hop1.example==Ak0K=JK=orig.example=alice@hop2.example", want: srs1Addr, back: srs1Orig},
		{name: "SRS1 with a + inside", sender: "SRS1=xxxx=hop1.example=+Ak0K=JK=orig.example=alice@hop2.example", back: "SRS0+Ak0K=JK=orig.example=alice@hop1.example"},
		{name: "malformed SRS1 wrapped in SRS0", sender: "SRS1=abc@hop2.example"},
		{name: "SRS1 with rest not SRS0 wrapped in SRS0", sender: "SRS1=abc=hop1=xyz@hop2.example"},
		{name: "SRS-looking name", sender: "SRS0x@orig.example"},
		{name: "our domain unchanged", sender: "user@fwd.example", want: "user@fwd.example", back: "-"},
		{name: "our domain, trailing dot", sender: "user@fwd.example.", want: "user@fwd.example.", back: "-"},
		{name: "our domain, other case", sender: "SRS0=W+Uy=IZ=orig.example=user@FWD.example", want: "SRS0=W+Uy=IZ=orig.example=user@FWD.example", back: "-"},
		{name: "null sender", sender: "", err: ErrNullSender},
		{name: "null sender in brackets", sender: "<>", err: ErrNullSender},
		{name: "no @", sender: "postmaster", err: ErrBadAddress},
		{name: "empty local part", sender: "@orig.example", err: ErrBadAddress},
		{name: "empty domain", sender: "user@", err: ErrBadAddress},
		{name: "@ in local part", sender: `"a@b"@orig.example`, err: ErrBadAddress},
		{name: "= in domain", sender: "user@orig=example", err: ErrBadAddress},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srs := s
			if tc.opts != nil {
				o := vecOptions(t0)
				tc.opts(&o)
				srs = mustNew(t, o)
			}
			got, err := srs.Forward(tc.sender)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || got != "" {
					t.Fatalf("Forward(%q) = %q, %v; want %v", tc.sender, got, err, tc.err)
				}
				return
			}
			if err != nil || (tc.want != "" && got != tc.want) {
				t.Fatalf("Forward(%q) = %q, %v; want %q", tc.sender, got, err, tc.want)
			}
			if tc.back == "-" {
				return
			}
			want := tc.back
			if want == "" {
				want = tc.sender
			}
			if back, err := srs.Reverse(got); err != nil || back != want {
				t.Fatalf("Reverse(Forward(%q) = %q) = %q, %v; want %q", tc.sender, got, back, err, want)
			}
		})
	}
}

// The hash input is lower-cased ASCII only, as C's tolower and Perl's lc on
// bytes: non-ASCII letters keep their case (checked against the real
// programs in the interop test).
func TestHashFoldsASCIIOnly(t *testing.T) {
	s := mustNew(t, vecOptions(t0))
	hashOf := func(sender string) string {
		a, err := s.Forward(sender)
		if err != nil {
			t.Fatal(err)
		}
		return a[5:9]
	}
	if hashOf("JÖRG@x.example") != hashOf("jÖrg@X.EXAMPLE") {
		t.Error("ASCII case changed the hash")
	}
	if hashOf("jÖrg@x.example") == hashOf("jörg@x.example") {
		t.Error("non-ASCII case did not change the hash")
	}
}

func TestStampAlwaysTwoLetters(t *testing.T) {
	for d := int64(0); d < 2*stampSlots; d++ {
		st := makeStamp(d)
		v, ok := parseStamp(st)
		if len(st) != 2 || !ok || v != int(d%stampSlots) {
			t.Fatalf("day %d: stamp %q reads back as %d, %v", d, st, v, ok)
		}
	}
	if makeStamp(0) != "AA" || makeStamp(1023) != "77" || makeStamp(14) != "AO" {
		t.Error("stamp letters")
	}
	// Days before 1970 (a broken clock) still give a valid stamp.
	s := mustNew(t, vecOptions(time.Date(1969, 12, 31, 12, 0, 0, 0, time.UTC)))
	if a, err := s.Forward("u@x.example"); err != nil || !strings.Contains(a, "=77=") {
		t.Errorf("1969-12-31: %q, %v", a, err)
	}
}

func TestNewOptions(t *testing.T) {
	base := func() Options { return Options{Domain: vecDomain, Secrets: []string{"s"}} }
	s := mustNew(t, base())
	if s.hashLen != 6 || s.hashMin != 6 || s.maxAgeDays != 31 || !s.useHash || !s.useStamp || s.sep != '=' || s.now == nil {
		t.Errorf("defaults: %+v", s)
	}
	if s.Domain() != vecDomain {
		t.Errorf("Domain() = %q", s.Domain())
	}
	a, err := s.Forward("u@x.example")
	if err != nil || !strings.Contains(a, "="+makeStamp(time.Now().Unix()/86400)+"=") {
		// Around midnight the two clocks may disagree; one retry settles it.
		if b, _ := s.Forward("u@x.example"); !strings.Contains(b, "="+makeStamp(time.Now().Unix()/86400)+"=") {
			t.Errorf("default clock: %q, %v", a, err)
		}
	}
	yes := new(true)
	ok := base()
	ok.HashLength, ok.HashMin, ok.MaxAge, ok.Separator, ok.UseHash = 27, 4, 1023*Day, '-', yes
	mustNew(t, ok)

	tests := []struct {
		name string
		mod  func(*Options)
		want []string
	}{
		{"no domain", func(o *Options) { o.Domain = "" }, []string{"domain is required"}},
		{"domain with @", func(o *Options) { o.Domain = "srs@fwd.example" }, []string{"plain domain"}},
		{"domain with space", func(o *Options) { o.Domain = "fwd example" }, []string{"printable ASCII"}},
		{"domain IDN", func(o *Options) { o.Domain = "fwd.exämple" }, []string{"A-label"}},
		{"no secrets", func(o *Options) { o.Secrets = nil }, []string{"at least one secret"}},
		{"empty secret", func(o *Options) { o.Secrets = []string{"a", ""} }, []string{"secret 2 is empty"}},
		{"hash length 3", func(o *Options) { o.HashLength = 3 }, []string{"hash_length 3"}},
		{"hash length 28", func(o *Options) { o.HashLength = 28 }, []string{"hash_length 28"}},
		{"hash min above length", func(o *Options) { o.HashLength, o.HashMin = 4, 5 }, []string{"hash_min 5"}},
		{"hash min 3", func(o *Options) { o.HashMin = 3 }, []string{"hash_min 3"}},
		{"max age negative", func(o *Options) { o.MaxAge = -Day }, []string{"must be positive"}},
		{"max age in hours", func(o *Options) { o.MaxAge = 36 * time.Hour }, []string{"whole days"}},
		{"max age 1024 days", func(o *Options) { o.MaxAge = 1024 * Day }, []string{"under 1024 days"}},
		{"separator", func(o *Options) { o.Separator = '_' }, []string{"separator '_'"}},
		{"all at once", func(o *Options) { *o = Options{HashLength: 2, MaxAge: time.Hour, Separator: '#'} },
			[]string{"domain is required", "at least one secret", "hash_length 2", "whole days", "separator '#'"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.mod(&o)
			s, err := New(o)
			if err == nil || s != nil {
				t.Fatalf("New accepted %+v", o)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "srs: "); n != len(tc.want) {
				t.Errorf("%d errors reported, want %d: %v", n, len(tc.want), err)
			}
		})
	}
}

func TestReadSecretsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // WriteFile's mode passes the umask
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    []string
		err     string
	}{
		{"LF", "new\nold\n", 0o600, []string{"new", "old"}, ""},
		{"CRLF", "new\r\nold\r\n", 0o600, []string{"new", "old"}, ""},
		{"no final newline", "new\nold", 0o400, []string{"new", "old"}, ""},
		{"comments and blanks", "# rotated 2026-01\n\n  \nnew\n\t# old one below\nold\n", 0o600, []string{"new", "old"}, ""},
		{"spaces are part of a secret", " a b \n", 0o600, []string{" a b "}, ""},
		{"only comments", "# nothing\n\n", 0o600, nil, "no secrets"},
		{"empty", "", 0o600, nil, "no secrets"},
		{"group readable", "s\n", 0o640, nil, "mode 0640 gives group or others access"},
		{"world readable", "s\n", 0o604, nil, "chmod 600"},
		{"group writable", "s\n", 0o620, nil, "mode 0620"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(strings.ReplaceAll(tc.name, " ", "_"), tc.content, tc.mode)
			got, err := ReadSecretsFile(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ReadSecretsFile = %q, %v; want error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("ReadSecretsFile = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ReadSecretsFile(filepath.Join(dir, "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ReadSecretsFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	big := write("big", strings.Repeat("x", maxSecretsFile+1), 0o600)
	if _, err := ReadSecretsFile(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
	// A secrets file as postsrsd reads it gives the same hashes.
	secrets, err := ReadSecretsFile(write("crlf", vecNew+"\r\n"+vecOld+"\r\n", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	o := vecOptions(t0)
	o.Secrets = secrets
	if a, err := mustNew(t, o).Forward("user@orig.example"); err != nil || a != plainSRS {
		t.Errorf("with secrets from a CRLF file: %q, %v", a, err)
	}
}

func TestStatusAndReason(t *testing.T) {
	tests := []struct {
		err    error
		status Status
		reason string
	}{
		{nil, StatusValid, ""},
		{ErrNotSRS, StatusNone, "not_srs"},
		{ErrUnknownSeparator, StatusNone, "unknown_separator"},
		{ErrBadFormat, StatusInvalid, "bad_format"},
		{ErrBadStamp, StatusInvalid, "bad_stamp"},
		{ErrHashTooShort, StatusInvalid, "hash_too_short"},
		{ErrBadHash, StatusInvalid, "bad_hash"},
		{ErrExpired, StatusExpired, "expired"},
		{ErrNullSender, StatusInvalid, "null_sender"},
		{ErrBadAddress, StatusInvalid, "bad_address"},
		{errors.New("other"), StatusInvalid, "error"},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		if got := StatusOf(tc.err); got != tc.status {
			t.Errorf("StatusOf(%v) = %q, want %q", tc.err, got, tc.status)
		}
		if got := Reason(tc.err); got != tc.reason {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.reason)
		}
		if seen[tc.reason] {
			t.Errorf("reason %q used twice", tc.reason)
		}
		seen[tc.reason] = true
	}
	// Through Reverse: wrapped with detail, still matched, reason kept.
	s := mustNew(t, vecOptions(dayStart(dayOfIZ21+5)))
	_, err := s.Reverse(plainSRS)
	if StatusOf(err) != StatusExpired || Reason(err) != "expired" || !strings.Contains(err.Error(), "26 days old, max_age is 21") {
		t.Errorf("expired: %v", err)
	}
	_, err = s.Reverse("SRS0#x@fwd.example")
	if !errors.Is(err, ErrNotSRS) || !errors.Is(err, ErrUnknownSeparator) || errors.Is(err, ErrBadFormat) || Reason(err) != "unknown_separator" {
		t.Errorf("unknown separator: %v", err)
	}
	if errors.Is(ErrNotSRS, ErrUnknownSeparator) {
		t.Error("ErrNotSRS matches its refinement")
	}
}

func TestIsOursIsSRS(t *testing.T) {
	s := mustNew(t, vecOptions(t0))
	for addr, want := range map[string]bool{
		"user@fwd.example":      true,
		"SRS0=x@FWD.Example":    true,
		"user@fwd.example.":     true,
		"user@sub.fwd.example":  false,
		"user@xfwd.example":     false,
		"fwd.example":           false,
		"user@fwd.example@evil": false,
	} {
		if got := s.IsOurs(addr); got != want {
			t.Errorf("IsOurs(%q) = %v", addr, got)
		}
	}
	for addr, want := range map[string]bool{
		plainSRS:                true,
		srs1Addr:                true,
		"srs0+x@y":              true,
		"SRS1-x":                true,
		"SRS0_x@y":              false,
		"SRS0@y":                false,
		"user@SRS0=x":           false,
		"":                      false,
		"SRS1=x@y@fwd.example":  true,
		"xSRS0=W+Uy@fwd.exampl": false,
	} {
		if got := IsSRS(addr); got != want {
			t.Errorf("IsSRS(%q) = %v", addr, got)
		}
	}
}

// Concurrent use shares the pooled HMAC states: the race detector watches.
func TestConcurrentUse(t *testing.T) {
	s := mustNew(t, vecOptions(t0))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				sender := strings.Repeat("u", 1+(g*i)%300) + "@orig.example"
				a, err := s.Forward(sender)
				if err != nil {
					t.Error(err)
					return
				}
				if back, err := s.Reverse(a); err != nil || back != sender {
					t.Errorf("Reverse(%q) = %q, %v", a, back, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
