package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQEMU serves one QMP connection on a unix socket, answering commands
// from answers (command → raw reply without id) and sending events after
// the commands listed in after.
func fakeQEMU(t *testing.T, answers map[string]string, after map[string]string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}` + "\n"))
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var req struct {
				Execute string          `json:"execute"`
				ID      json.RawMessage `json:"id"`
			}
			if json.Unmarshal(sc.Bytes(), &req) != nil {
				return
			}
			ans, ok := answers[req.Execute]
			if !ok {
				ans = `"return": {}`
			}
			if ans == "hangup" {
				return
			}
			conn.Write([]byte("{" + ans + `, "id": ` + string(req.ID) + "}\n"))
			if ev, ok := after[req.Execute]; ok {
				conn.Write([]byte(ev + "\n"))
			}
		}
	}()
	return sock
}

func TestCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sock := fakeQEMU(t, map[string]string{
		"query-status":     `"return": {"status": "paused", "running": false, "singlestep": false}`,
		"system_powerdown": `"error": {"class": "GenericError", "desc": "no ACPI"}`,
		"quit":             "hangup",
	}, map[string]string{
		"system_reset": `{"event": "RESET", "data": {"guest": false, "reason": "host-qmp-system-reset"}, "timestamp": {"seconds": 1, "microseconds": 2}}`,
	})
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	st, err := c.Status(ctx)
	if err != nil || st.Running || st.Status != "paused" {
		t.Fatalf("Status = %+v, %v; want paused", st, err)
	}
	if err := c.Cont(ctx); err != nil {
		t.Fatalf("Cont: %v", err)
	}
	if err := c.SystemReset(ctx); err != nil {
		t.Fatalf("SystemReset: %v", err)
	}
	select {
	case ev := <-c.Events():
		if ev.Name != "RESET" || ev.ShutdownReason() != "host-qmp-system-reset" || ev.Timestamp.Seconds != 1 {
			t.Fatalf("event = %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no RESET event")
	}
	err = c.SystemPowerdown(ctx)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "GenericError" || !strings.Contains(err.Error(), "system_powerdown") {
		t.Fatalf("SystemPowerdown error = %v; want a GenericError naming the command", err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatalf("Quit with hang-up: %v", err)
	}
	<-c.Done()
	if err := c.Stop(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stop after hang-up = %v; want ErrClosed", err)
	}
}

func TestDialErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name     string
		greeting string
		want     string
	}{
		{"not json", "hello\n", "not JSON"},
		{"no greeting", `{"return": {}}` + "\n", "greeting"},
		{"hang-up", "", "closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "q.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				conn, err := ln.Accept()
				if err == nil {
					conn.Write([]byte(tc.greeting))
					conn.Close()
				}
			}()
			_, err = Dial(ctx, sock)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial error = %v; want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := Dial(ctx, filepath.Join(t.TempDir(), "missing.sock")); err == nil || !strings.Contains(err.Error(), "missing.sock") {
		t.Fatalf("Dial of a missing socket = %v; want an error naming it", err)
	}
}

// TestRealQEMU drives a real, paused QEMU (no guest, no accelerator work).
func TestRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.CommandContext(ctx, bin, "-S", "-machine", "none", "-nodefaults", "-display", "none",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var c *Client
	for c == nil {
		c, err = Dial(ctx, sock)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	defer c.Close()
	for _, step := range []struct {
		do      func(context.Context) error
		running bool
	}{{nil, false}, {c.Cont, true}, {c.Stop, false}, {c.Cont, true}} {
		if step.do != nil {
			if err := step.do(ctx); err != nil {
				t.Fatal(err)
			}
		}
		st, err := c.Status(ctx)
		if err != nil || st.Running != step.running {
			t.Fatalf("status = %+v, %v; want running=%v", st, err, step.running)
		}
	}
	if err := c.Execute(ctx, "no-such-command", nil, nil); err == nil {
		t.Fatal("an unknown command succeeded")
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("QEMU did not exit cleanly after quit: %v", err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"QMP": {"version": {}, "capabilities": []}}`,
		`{"return": {}, "id": "kiln-1"}`,
		`{"error": {"class": "GenericError", "desc": "x"}, "id": 3}`,
		`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-reset"}, "timestamp": {"seconds": 1, "microseconds": 1}}`,
		`{"return": {}, "event": "X"}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		n := 0
		if m.Greeting != nil {
			n++
		}
		if m.Return != nil {
			n++
		}
		if m.Error != nil {
			n++
		}
		if m.Event != "" {
			n++
		}
		if n != 1 {
			t.Fatalf("decoded %q into %d kinds", b, n)
		}
	})
}
