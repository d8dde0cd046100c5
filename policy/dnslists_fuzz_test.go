package policy

import "testing"

// FuzzDNSListItem feeds arbitrary items to the dnslists item parser: no
// input may panic; an item it accepts has a zone made of DNS labels and
// writes back (String) to text that parses to the same item.
func FuzzDNSListItem(f *testing.F) {
	for _, s := range []string{
		"zen.example.org", "bl.example.net=127.0.0.2", "bl.example.net=127.0.0.2,127.0.0.3",
		"bits.example.net&0.0.0.4", "a.example!=127.0.0.1", "a.example!&0.0.0.2", "x.example==127.0.0.2",
		"x.example=&0.0.0.3", "txt.example,zone.example=127.0.0.2/192.0.2.1", "dbl.example/$sender_address_domain",
		"+include_unknown", "+defer_unknown", "!allow.example.org", "zone.example&=1.2.3.4", "a/b/c=d", ",", "=", "&", "/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		item, _, isFlag, err := parseDNSListItem(s)
		if err != nil || isFlag {
			return
		}
		if checkDNSListDomain(item.domain) != nil || (item.txtDomain != "" && checkDNSListDomain(item.txtDomain) != nil) {
			t.Fatalf("%q: accepted a bad zone %q / %q", s, item.domain, item.txtDomain)
		}
		if item.hasKey && item.key == "" {
			t.Fatalf("%q: accepted an empty key", s)
		}
		again, _, isFlag, err := parseDNSListItem(item.String())
		if err != nil || isFlag {
			t.Fatalf("%q wrote back as %q, which does not parse: %v", s, item.String(), err)
		}
		again.raw, item.raw = "", ""
		if again.String() != item.String() || again.negate != item.negate || again.all != item.all ||
			again.bitmask != item.bitmask || len(again.values) != len(item.values) || again.key != item.key {
			t.Fatalf("%q: %+v wrote back and parsed as %+v", s, item, again)
		}
	})
}
