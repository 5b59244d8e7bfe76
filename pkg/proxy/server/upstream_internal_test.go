package server

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestPoolShedsIdleBuffers: an upstream connection idle in the pool for
// shedAfter gives its buffers back, one idle for less keeps them, and get
// hands the shed one out with buffers that work.
func TestPoolShedsIdleBuffers(t *testing.T) {
	p := newPool(newCoarseClock())
	conn := func() (*upConn, net.Conn) {
		ours, peer := net.Pipe()
		t.Cleanup(func() { _ = ours.Close(); _ = peer.Close() })
		return p.newUpConn("k", ours, nil), peer
	}
	old, peer := conn()
	young, _ := conn()
	p.put(old)
	p.put(young)
	old.idleAt = old.idleAt.Add(-2 * shedAfter)
	now := young.idleAt
	next := p.shedIdle(now)
	if old.br != nil || old.bw != nil {
		t.Fatal("a connection idle for twice shedAfter kept its buffers")
	}
	if young.br == nil || young.bw == nil {
		t.Fatal("a connection idle for less than shedAfter lost its buffers")
	}
	if want := young.idleAt.Add(shedAfter); !next.Equal(want) {
		t.Fatalf("next shedding due %v, want %v (when the young one is due)", next, want)
	}
	if got := p.get("k"); got != young {
		t.Fatal("get did not return the most recently used connection first")
	}
	got := p.get("k")
	if got != old || got.br == nil || got.bw == nil {
		t.Fatalf("get returned %p (br %v), want the shed connection with new buffers", got, got != nil && got.br != nil)
	}
	go func() {
		_, _ = got.bw.WriteString("ping")
		_ = got.bw.Flush()
	}()
	buf := make([]byte, 4)
	_ = peer.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("write through the new buffers: %q, %v", buf, err)
	}
	go func() { _, _ = peer.Write([]byte("pong")) }()
	if b, err := got.br.Peek(4); err != nil || string(b) != "pong" {
		t.Fatalf("read through the new buffers: %q, %v", b, err)
	}
}
