package dkimsig

import (
	"strings"
	"testing"
)

// TestRender: the folded list unfolds to "k=v; k=v", no line passes column
// 78 (counting the field name on the first), and the text before b= is the
// same whether b= is empty or holds the signature, since the signature is
// computed over the empty form.
func TestRender(t *testing.T) {
	names := strings.Repeat("from:to:subject:date:message-id:", 6) + "mime-version"
	tags := []Tag{
		{Name: "v", Value: "1"}, {Name: "a", Value: "rsa-sha256"}, {Name: "c", Value: "relaxed/relaxed"},
		{Name: "d", Value: "example.org"}, {Name: "s", Value: "selector"}, {Name: "t", Value: "1764763200"},
		{Name: "h", Value: names}, {Name: "bh", Value: strings.Repeat("B", 44)}, {Name: "b"},
	}
	empty := Render("DKIM-Signature", tags)
	tags[len(tags)-1].Value = strings.Repeat("S", 344)
	full := Render("DKIM-Signature", tags)
	if !strings.HasPrefix(full, empty) || !strings.HasSuffix(empty, "\r\n\tb=") {
		t.Fatalf("the text before b= changed:\n%q\n%q", empty, full)
	}
	for i, line := range strings.Split("DKIM-Signature: "+full, "\r\n") {
		if width := len(strings.Replace(line, "\t", "        ", 1)); width > 78 {
			t.Errorf("line %d is %d columns: %q", i, width, line)
		}
	}
	var want []string
	for _, tg := range tags {
		want = append(want, tg.Name+"="+tg.Value)
	}
	if got := strings.ReplaceAll(full, "\r\n\t", ""); strings.ReplaceAll(got, "; ", ";") != strings.Join(want, ";") {
		t.Fatalf("unfolded %q", got)
	}
}
