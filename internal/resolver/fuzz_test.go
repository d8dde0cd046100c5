package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzTXTBytes: whatever bytes a server puts in a TXT character-string,
// LookupTXT hands back those bytes, after miekg/dns has unpacked them into
// its escaped presentation form.
func FuzzTXTBytes(f *testing.F) {
	for _, seed := range []string{"v=spf1 -all", "\x80\xef\xbb\xbf", `a\b"c`, "\\065\\", "\r\n\x00\x7f", "\\\\\\"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 255 {
			raw = raw[:255]
		}
		// one character-string on the wire, built by hand: length, bytes
		wire := append([]byte{byte(len(raw))}, raw...)
		rr := &dns.TXT{Hdr: dns.RR_Header{Name: "x.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Rdlength: uint16(len(wire))}}
		msg := new(dns.Msg)
		msg.SetQuestion("x.example.", dns.TypeTXT)
		msg.Answer = []dns.RR{rr}
		packed, err := msg.Pack()
		if err != nil {
			t.Skip()
		}
		// replace the empty rdata with ours
		packed = append(packed, wire...)
		packed[len(packed)-len(wire)-1] = byte(len(wire))
		packed[len(packed)-len(wire)-2] = byte(len(wire) >> 8)
		var back dns.Msg
		if err := back.Unpack(packed); err != nil || len(back.Answer) != 1 {
			t.Fatalf("unpack: %v", err)
		}
		txt := back.Answer[0].(*dns.TXT).Txt
		if len(txt) != 1 {
			t.Fatalf("%q", txt)
		}
		if got := txtBytes(txt[0]); got != raw {
			t.Fatalf("%q came back as %q (presented %q)", raw, got, txt[0])
		}
	})
}
