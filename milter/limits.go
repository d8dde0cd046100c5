package milter

import (
	"time"

	gomilter "github.com/d--j/go-milter"
)

// Limits bound what one MTA peer can make the daemon hold. Zero values mean
// the defaults (DefaultLimits); README.md ("Limits") gives the memory each
// bounds.
type Limits struct {
	// MaxConnections is how many MTA connections may be open at once; the
	// next one is closed at accept (the MTA applies milter_default_action to
	// that SMTP session and tries again with the next one).
	MaxConnections int
	// IdleTimeout is the longest wait for the next packet once negotiated.
	IdleTimeout time.Duration
	// MaxPacket is the largest milter packet accepted (command byte included).
	MaxPacket int
	// MaxHeaders and MaxHeaderBytes bound one message's header section; past
	// either, the message gets the configured on_error.
	MaxHeaders     int
	MaxHeaderBytes int64
}

// Defaults for Limits, chosen against what MTAs really send: Postfix's
// header_size_limit (102400 bytes for one header) fits in a packet, and so
// does a 256 KiB body chunk, the most tollgate negotiates under this default.
const (
	DefaultMaxConnections = 1000
	DefaultIdleTimeout    = 10 * time.Minute // Postfix waits 300 s (milter_content_timeout); a quiet SMTP client may pause as long
	DefaultMaxPacket      = 256 << 10
	DefaultMaxHeaders     = 1000
	DefaultMaxHeaderBytes = 1 << 20
	// MinMaxPacket is the smallest max_packet allowed: a 64 KiB body chunk
	// (the protocol's smallest) and its command byte must fit.
	MinMaxPacket = 64 << 10
	// MaxMaxPacket bounds max_packet: 1 MiB chunks are the protocol's
	// largest; more only lets a peer make the daemon hold more.
	MaxMaxPacket = 16 << 20
	// MinIdleTimeout is the shortest idle_timeout accepted.
	MinIdleTimeout = time.Second
)

// DefaultLimits are the limits of a configuration that sets none.
func DefaultLimits() Limits {
	return Limits{MaxConnections: DefaultMaxConnections, IdleTimeout: DefaultIdleTimeout, MaxPacket: DefaultMaxPacket,
		MaxHeaders: DefaultMaxHeaders, MaxHeaderBytes: DefaultMaxHeaderBytes}
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxConnections <= 0 {
		l.MaxConnections = d.MaxConnections
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.MaxPacket <= 0 {
		l.MaxPacket = d.MaxPacket
	}
	l.MaxPacket = max(l.MaxPacket, MinMaxPacket)
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = d.MaxHeaders
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	return l
}

// chunkSize is the largest body chunk to agree on: at most what the MTA
// offered and small enough that a chunk and its command byte fit in
// maxPacket. The negotiation and the wire check both use it.
func chunkSize(offered gomilter.DataSize, maxPacket int) gomilter.DataSize {
	for _, size := range []gomilter.DataSize{gomilter.DataSize1M, gomilter.DataSize256K} {
		if offered >= size && int(size)+1 <= maxPacket {
			return size
		}
	}
	return gomilter.DataSize64K
}
