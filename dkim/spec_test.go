package dkim

import (
	"context"
	"fmt"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/feature"
	"github.com/tollgate/tollgate/internal/dnstest"
	"github.com/tollgate/tollgate/milter"
	"github.com/tollgate/tollgate/policy"
)

var specs = []feature.Spec{Spec}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yml, want string }{
		{"dkim: {}\n", "t.yaml:1: dkim needs authserv_id (top level)"},
		{"authserv_id: mx.example.org\ndkim:\n  max_signatures: 0\n", "t.yaml:3: dkim.max_signatures: 0 is not between 1 and 100"},
		{"authserv_id: mx.example.org\ndkim:\n  min_rsa_bits: 512\n", "t.yaml:3: dkim.min_rsa_bits: 512 is not between 1024 (RFC 8301) and 16384"},
		{"authserv_id: mx.example.org\ndkim:\n  timeout: 0s\n", "t.yaml:3: dkim.timeout: must be more than 0"},
		{"authserv_id: mx.example.org\ndkim:\n  sign: {}\n", "t.yaml:3"},
		{"authserv_id: mx.example.org\ndkim: {}\nacl:\n  rcpt:\n    - accept: {dkim: [pass]}\n", "acl.rcpt: dkim is not available at rcpt"},
		{"authserv_id: mx.example.org\ndkim: {}\nacl:\n  data:\n    - accept: {dkim: [passed]}\n", `t.yaml:5: dkim: "passed" is not pass, fail, invalid or none`},
		{"authserv_id: mx.example.org\ndkim: {}\nacl:\n  data:\n    - accept: {dkim_signers: []}\n", "t.yaml:5: dkim_signers: an empty list never matches"},
		{"authserv_id: mx.example.org\ndkim: {}\nacl:\n  data:\n    - accept: {dkim_signers: [+nosuchlist]}\n", "nosuchlist"},
		{"authserv_id: mx.example.org\nacl:\n  data:\n    - accept: {dkim: [pass]}\n", "dkim"},
	} {
		if _, err := policy.Parse("t.yaml", []byte(tc.yml), specs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yml, err, tc.want)
		}
	}
}

func TestEffectiveDefaults(t *testing.T) {
	p, err := policy.Parse("t.yaml", []byte("authserv_id: mx.example.org\ndkim: {}\n"), specs...)
	if err != nil {
		t.Fatal(err)
	}
	s := p.Section(name).(*section)
	if s.o.MaxSignatures != 5 || s.o.Timeout != DefaultTimeout || s.o.MinRSABits != 1024 {
		t.Errorf("compiled %+v", s.o)
	}
	eff := Spec.(feature.Defaulter).Effective(&Config{}).(*Config)
	if *eff.MaxSignatures != 5 || *eff.MinRSABits != 1024 || *eff.Timeout != feature.Duration(DefaultTimeout) {
		t.Errorf("effective %+v", eff)
	}
}

// TestPolicyOnRealMessages runs signed messages through the module a
// policy builds, on the policy's own resolver, then the data ACL.
func TestPolicyOnRealMessages(t *testing.T) {
	srv := dnstest.Start(t)
	key := rsaKey(t, 2048)
	publish(srv, "s1._domainkey.example.org", key.txt)
	publish(srv, "s1._domainkey.mail.partner.example", key.txt)
	p, err := policy.Parse("t.yaml", []byte(`
authserv_id: mx.example.net
dns: {server: "`+srv.Addr+`", timeout: 1s}
dkim: {max_signatures: 3, timeout: 2s}
lists:
  partners: ["*.partner.example"]
acl:
  data:
    - deny:   {name: forged, dkim: [fail, invalid], message: "550 5.7.1 DKIM $dkim_verify_reason"}
    - accept: {name: partner, dkim_signers: [+partners], add_header: "X-Partner: $dkim_signers"}
    - accept: {name: signed, dkim: [pass], add_header: "X-DKIM: $dkim_verify_status d=$dkim_domain s=$dkim_selector"}
    - accept: {name: unsigned, dkim: ["!pass"]}
`), specs...)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := policy.NewEnv(nil, prometheus.NewRegistry()).Runtime(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rt.Modules()) != 1 || rt.Modules()[0].Name() != "dkim" {
		t.Fatalf("modules %v", rt.Modules())
	}
	m := rt.Modules()[0].(*Module)
	signed := sign(t, plainMessage, msgdkim.SignOptions{Domain: "example.org", Selector: "s1", Signer: key.signer, HeaderKeys: headerKeys})
	partner := sign(t, plainMessage, msgdkim.SignOptions{Domain: "mail.partner.example", Selector: "s1", Signer: key.signer,
		Identifier: "news@mail.partner.example", HeaderKeys: headerKeys})
	for _, tc := range []struct {
		name, msg, rule, header string
	}{
		{"signed", signed, "signed", "pass d=example.org s=s1"},
		{"tampered", strings.Replace(signed, "Hello", "Hullo", 1), "forged", ""},
		{"partner", partner, "partner", "mail.partner.example:news@mail.partner.example"},
		{"unsigned", plainMessage, "unsigned", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, body := splitMessage(t, tc.msg, "\r\n")
			tx := run(t, m, hs, body, 4096)
			s := &milter.Session{Vars: map[string]string{}}
			tx.Session = s
			d, err := rt.Evaluate(context.Background(), milter.StageData, s, tx, nil)
			if err != nil || d.Rule != tc.rule {
				t.Fatalf("rule %q (%v), want %q; facts %+v", d.Rule, err, tc.rule, FactsOf(tx))
			}
			if tc.rule == "forged" && !strings.Contains(fmt.Sprint(d.Reply), "DKIM bodyhash_mismatch") {
				t.Errorf("reply %+v", d.Reply)
			}
			if tc.header != "" && (len(tx.Mutations.Append) != 1 || !strings.HasSuffix(tx.Mutations.Append[0].Value, tc.header)) {
				t.Errorf("headers %+v, want %q", tx.Mutations.Append, tc.header)
			}
		})
	}
}
