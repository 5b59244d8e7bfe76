package server

import "testing"

// TestPickLoopSpreads: connections the kernel hands to one loop are
// spread so that every loop serves as many; a loop keeps the ones it
// accepts while it serves no more than the others.
func TestPickLoopSpreads(t *testing.T) {
	loops := []*eventLoop{{}, {}, {}}
	s := &h1Server{loops: loops}
	for range 30 {
		s.pickLoop(loops[0]) // a burst, all accepted by loop 0
	}
	for i, l := range loops {
		if n := l.clients.Load(); n != 10 {
			t.Errorf("loop %d serves %d connections, want 10", i, n)
		}
	}
	loops[2].clients.Add(-4) // connections on loop 2 closed
	for range 4 {
		if to := s.pickLoop(loops[1]); to != loops[2] {
			t.Fatalf("a connection went to loop %p, not to the least busy one", to)
		}
	}
	if to := s.pickLoop(loops[1]); to != loops[1] {
		t.Fatal("with all loops equally busy, the accepting loop should keep the connection")
	}
}
