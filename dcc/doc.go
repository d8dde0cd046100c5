// Package dcc is a streaming client for dccifd, the DCC interface daemon
// (bulk-mail checksums and greylisting), with Exim's result mapping.
//
// One connection carries one message. Start connects and writes the
// envelope (options, client, HELO, sender, recipients); Header,
// EndOfHeaders and Body write the message as the MTA sends it; Finish
// half-closes (the protocol's only end marker) and reads the reply:
//
//	A             overall: A accept, R reject, G greylist, T temporary failure, S some
//	AR            one letter per recipient: A, R or G
//	X-DCC-...     with the "header" option: the X-DCC header, folded
//	              an empty line
//
// Nothing but a small write buffer is held, whatever the message size, and
// the time spent waiting on dccifd (connect, writes, reply) is bounded by
// Options.Timeout. Every failure is an error with a stable kind (Kind);
// those that mean "dccifd gave no usable answer" match ErrUnavailable.
//
// The protocol facts this package relies on, and where they come from, are
// in README.md ("Facts"). Package dcctest is a dccifd stand-in for tests.
package dcc
