// Package mta plays the MTA's side of a milter session the way Postfix
// does: the client and the macros it asks for, the address family, header
// fields with or without their leading space, and the body in Postfix's
// chunks. It is the one MTA emulator of `tollgate test`, tollgate-bench and
// the tests (internal/miltertest), so that all three drive a milter alike.
package mta

import (
	"net/netip"
	"strings"

	gomilter "github.com/d--j/go-milter"
)

// BodyChunk is the largest body chunk Postfix sends (MILTER_CHUNK_SIZE).
const BodyChunk = 65535

// PostfixMacros are Postfix 3.7's default macro lists (milter_*_macros),
// sent when a milter does not ask for its own, by stage.
var PostfixMacros = [][]string{
	gomilter.StageConnect: {"j", "{daemon_name}", "{daemon_addr}", "v", "_"},
	gomilter.StageHelo:    {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	gomilter.StageMail:    {"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}"},
	gomilter.StageRcpt:    {"i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"},
	gomilter.StageData:    {"i"},
	gomilter.StageEOM:     {"i"},
	gomilter.StageEOH:     {"i"},
}

// NewClient is go-milter's client for the milter at network/addr, offering
// every action the client can apply, as an MTA does; opts come after.
func NewClient(network, addr string, opts ...gomilter.Option) *gomilter.Client {
	return gomilter.NewClient(network, addr,
		append([]gomilter.Option{gomilter.WithActions(gomilter.AllClientSupportedActionMasks)}, opts...)...)
}

// PostfixMacroRequests are the client options that ask for Postfix's
// default macros (PostfixMacros) instead of go-milter's.
func PostfixMacroRequests() []gomilter.Option {
	opts := []gomilter.Option{gomilter.WithoutDefaultMacros()}
	for stage, names := range PostfixMacros {
		opts = append(opts, gomilter.WithMacroRequest(gomilter.MacroStage(stage), names))
	}
	return opts
}

// Family is the protocol family the MTA reports for a client address.
func Family(a netip.Addr) gomilter.ProtoFamily {
	if a.Is6() && !a.Is4In6() {
		return gomilter.FamilyInet6
	}
	return gomilter.FamilyInet
}

// Header sends one header field. value is everything after the colon; the
// leading space goes to the milter only if it negotiated
// OptHeaderLeadingSpace.
func Header(s *gomilter.ClientSession, name, value string) (*gomilter.Action, error) {
	if !s.ProtocolOption(gomilter.OptHeaderLeadingSpace) {
		value = strings.TrimPrefix(value, " ")
	}
	return s.HeaderField(name, value, nil)
}

// Body sends body (CRLF line ends) in chunks of at most BodyChunk bytes,
// an empty body as one empty chunk (go-milter's client needs one before the
// end of the message). It stops at the first action that ends the message
// (neither continue nor skip) and returns it; nil means the end of the
// message comes next, also when the milter asked to skip the rest of the
// body.
func Body(s *gomilter.ClientSession, body []byte) (*gomilter.Action, error) {
	for rest := body; ; {
		chunk := rest[:min(len(rest), BodyChunk)]
		rest = rest[len(chunk):]
		act, err := s.BodyChunk(chunk)
		if err != nil {
			return nil, err
		}
		switch act.Type {
		case gomilter.ActionContinue:
		case gomilter.ActionSkip:
			return nil, nil
		default:
			return act, nil
		}
		if len(rest) == 0 {
			return nil, nil
		}
	}
}
