package seamtest

import (
	"fmt"
	"testing"

	"github.com/tollgate/tollgate/dcc/dcctest"
)

// DCC's per-recipient drop (dccifd answered R for a recipient) meets the
// other modules acting on recipients: each recipient deleted once, a drop
// of a reversed SRS bounce drops the original too, and the others delivered.
func TestEnvelopeDCCDrop(t *testing.T) {
	spamd := spamdStandIn(t)
	bounce := bounceTo(t, "alice@example.net")
	// A whiteclnt "many env_To" for carol and for alice (the address the
	// bounce really goes to: dccifd judges that one).
	srv := dcctest.New(t, dcctest.Config{Network: "tcp", Handler: dcctest.Users{Many: []string{"carol@example.org", "alice@example.net"}}.Handler()})
	dcc := "dcc: {address: \"" + srv.DCCAddress() + "\"}\n"
	drop := "    - warn: {control: [dcc_drop_rejected]}\n"
	bmiRun := "    - warn: {control: [bmi_run]}\n"
	for _, tc := range []struct {
		name   string
		config string
		msg    message
		want   outcome
	}{
		{"DCC drop alone", config(spamd, "", drop, dcc), message{"x@example.net", []string{"bob@example.org", "carol@example.org"}},
			outcome{rcpts: []string{"bob@example.org"}, deletes: []string{"carol@example.org"}, action: "accept"}},
		{"DCC drop of the only recipient", config(spamd, "", drop, dcc), message{"x@example.net", []string{"carol@example.org"}},
			outcome{rcpts: []string{"carol@example.org"}, action: "discard"}},
		{"DCC drop x SRS reverse", config(spamd, "", drop, dcc), message{"", []string{bounce, "bob@example.org"}},
			outcome{rcpts: []string{"bob@example.org"}, deletes: []string{bounce}, action: "accept"}},
		{"DCC drop x rcpt discard of the same recipient", config(spamd, "", "    - discard: {recipients: [carol@example.org]}\n"+drop, dcc),
			message{"x@example.net", []string{"bob@example.org", "carol@example.org"}},
			outcome{rcpts: []string{"bob@example.org"}, deletes: []string{"carol@example.org"}, action: "accept"}},
		{"DCC drop x BMI drop of another", config(spamd, "{id: 1, when: {recipients: [bob@example.org]}, outcome: drop}", bmiRun+drop, dcc),
			message{"x@example.net", []string{"bob@example.org", "carol@example.org", "dave@example.org"}},
			outcome{rcpts: []string{"dave@example.org"}, deletes: []string{"carol@example.org", "bob@example.org"}, action: "accept"}},
		{"DCC drop x BMI drop of the other: nobody left", config(spamd, "{id: 1, when: {recipients: [bob@example.org]}, outcome: drop}", bmiRun+drop, dcc),
			message{"x@example.net", []string{"bob@example.org", "carol@example.org"}},
			outcome{rcpts: []string{"bob@example.org", "carol@example.org"}, action: "discard"}},
		{"DCC drop x BMI drop of the same", config(spamd, "{id: 1, when: {recipients: [carol@example.org]}, outcome: drop}", bmiRun+drop, dcc),
			message{"x@example.net", []string{"bob@example.org", "carol@example.org"}},
			outcome{rcpts: []string{"bob@example.org"}, deletes: []string{"carol@example.org"}, action: "accept"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := send(t, tc.config, tc.msg)
			if tc.want.sender == "" {
				tc.want.sender = tc.msg.sender
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
