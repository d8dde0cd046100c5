// Package miltertest serves a milter on a unix socket and plays an MTA
// against it (with internal/mta, the one MTA emulator), the way the
// benchmarks of milter/ and policy/ need it: one connection per message as
// Postfix opens one per SMTP connection, Postfix-like macros.
package miltertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/mta"
	"github.com/tollgate/tollgate/milter"
)

// Serve runs tollgate's server with rt or, when rt is nil, go-milter's
// NoOpMilter negotiating protocol and actions, on a fresh unix socket, and
// returns the socket's path. Stopped by tb.Cleanup.
func Serve(tb testing.TB, rt milter.Runtime, protocol gomilter.OptProtocol, actions gomilter.OptAction) string {
	tb.Helper()
	return ServeMetrics(tb, rt, protocol, actions, milter.NewMetrics(prometheus.NewRegistry()))
}

// ServeMetrics is Serve with the server's metrics in the caller's hands.
func ServeMetrics(tb testing.TB, rt milter.Runtime, protocol gomilter.OptProtocol, actions gomilter.OptAction, metrics *milter.Metrics) string {
	tb.Helper()
	sock := filepath.Join(tb.TempDir(), "m.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	if rt == nil {
		srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return gomilter.NoOpMilter{} }),
			gomilter.WithProtocols(protocol), gomilter.WithActions(actions))
		go srv.Serve(ln)
		tb.Cleanup(func() { srv.Close() })
		return sock
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil)) // the summary line is formatted, as in production
	srv := milter.NewServer(rt, milter.ServerOptions{Logger: log, Metrics: metrics})
	go srv.Serve(ln)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return sock
}

// Client is go-milter's client for sock, with the macros Postfix sends for a
// client at 203.0.113.5.
func Client(sock string) (*gomilter.Client, *gomilter.MacroBag) {
	c := mta.NewClient("unix", sock)
	m := gomilter.NewMacroBag()
	for k, v := range map[string]string{"j": "mx.example.org", "{daemon_name}": "mx.example.org", "v": "Postfix 3.7.11",
		"{client_addr}": "203.0.113.5", "{client_port}": "40000", "{client_name}": "mail.example.net", "i": "4XkT2c0Zz3z9t",
		"{mail_addr}": "sender@example.net", "{rcpt_addr}": "user1@example.org"} {
		m.Set(k, v)
	}
	return c, m
}

// Negotiated returns the protocol flags and actions the milter at sock
// negotiates with Client.
func Negotiated(tb testing.TB, sock string) (gomilter.OptProtocol, gomilter.OptAction) {
	tb.Helper()
	c, macros := Client(sock)
	s, err := c.Session(macros)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	var p gomilter.OptProtocol
	var a gomilter.OptAction
	for bit := 0; bit < 32; bit++ {
		if s.ProtocolOption(gomilter.OptProtocol(1 << bit)) {
			p |= gomilter.OptProtocol(1 << bit)
		}
		if s.ActionOption(gomilter.OptAction(1 << bit)) {
			a |= gomilter.OptAction(1 << bit)
		}
	}
	return p, a
}

// Send is one SMTP connection with one message to rcpts recipients; every
// stage must continue and the message be accepted. Header values are given
// with or without their leading space.
func Send(tb testing.TB, c *gomilter.Client, macros *gomilter.MacroBag, hdrs []milter.Header, body []byte, rcpts int) {
	s, err := c.Session(macros)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	check := func(act *gomilter.Action, err error) {
		if err != nil {
			tb.Fatal(err)
		}
		if act.Type != gomilter.ActionContinue && act.Type != gomilter.ActionAccept {
			tb.Fatalf("action %v", act)
		}
	}
	check(s.Conn("mail.example.net", gomilter.FamilyInet, 40000, "203.0.113.5"))
	check(s.Helo("mail.example.net"))
	check(s.Mail("sender@example.net", ""))
	for i := 1; i <= rcpts; i++ {
		check(s.Rcpt(fmt.Sprintf("user%d@example.org", i), ""))
	}
	check(s.DataStart())
	for _, h := range hdrs {
		check(mta.Header(s, h.Name, " "+strings.TrimPrefix(h.Value, " ")))
	}
	check(s.HeaderEnd())
	act, err := mta.Body(s, body)
	if err != nil || act != nil {
		check(act, err)
		return
	}
	_, act, err = s.End()
	check(act, err)
}
