package milter

import "net"

// ServeUnwrapped serves ln the way tollgate did before the wire was owned:
// go-milter reads the socket itself. Only BenchmarkWire uses it, to measure
// what the wire check costs or saves.
func (s *Server) ServeUnwrapped(ln net.Listener) error { return s.milter.Serve(ln) }
