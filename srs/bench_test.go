package srs

import "testing"

func benchSRS(b *testing.B) *SRS {
	o := vecOptions(t0)
	o.Secrets = []string{vecNew, vecOld}
	return mustNew(b, o)
}

func BenchmarkForward(b *testing.B) {
	s := benchSRS(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Forward("user.name+tag@orig.example"); err != nil {
			b.Fatal(err)
		}
	}
}

// Reverse of an address signed with the first secret: all secrets are still
// tried (constant time), so this is the cost with two.
func BenchmarkReverse(b *testing.B) {
	s := benchSRS(b)
	addr, err := s.Forward("user.name+tag@orig.example")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Reverse(addr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReverseSRS1(b *testing.B) {
	s := benchSRS(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Reverse(srs1Addr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkForwardParallel(b *testing.B) {
	s := benchSRS(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Forward("user.name+tag@orig.example"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
