package dockercheck

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// fakeDocker answers docker CLI calls by their first argument.
type fakeDocker struct {
	answers map[string]fakeAnswer
	calls   []string
}

type fakeAnswer struct {
	out string
	err error
}

func (f *fakeDocker) Run(_ context.Context, args ...string) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(args, " "))
	a, ok := f.answers[args[0]]
	if !ok {
		return nil, errors.New("unexpected docker " + args[0])
	}
	return []byte(a.out), a.err
}

func TestCheckPrivileged(t *testing.T) {
	okInfo := fakeAnswer{out: `{"ServerVersion":"20.10.24","SecurityOptions":["name=seccomp,profile=default","name=cgroupns"]}`}
	tests := []struct {
		name    string
		answers map[string]fakeAnswer
		wantErr string // empty: success
		wantRun bool
	}{
		{
			name:    "privileged works",
			answers: map[string]fakeAnswer{"info": okInfo, "image": {out: "sha256:1"}, "run": {out: "CapEff:\t000001ffffffffff\n"}},
			wantRun: true,
		},
		{
			name:    "daemon unreachable",
			answers: map[string]fakeAnswer{"info": {err: errors.New("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")}},
			wantErr: "not reachable",
		},
		{
			name:    "rootless",
			answers: map[string]fakeAnswer{"info": {out: `{"ServerVersion":"24.0.0","SecurityOptions":["name=seccomp,profile=default","name=rootless"]}`}},
			wantErr: "rootless",
		},
		{
			name:    "privileged refused",
			answers: map[string]fakeAnswer{"info": okInfo, "image": {out: "sha256:1"}, "run": {err: errors.New("exit status 125: docker: Error response from daemon: privileged mode is disabled")}},
			wantErr: "privileged test container failed", wantRun: true,
		},
		{
			name:    "privileged without CAP_SYS_ADMIN",
			answers: map[string]fakeAnswer{"info": okInfo, "image": {out: "sha256:1"}, "run": {out: "CapEff:\t00000000a80425fb\n"}},
			wantErr: "lacks CAP_SYS_ADMIN", wantRun: true,
		},
		{
			name:    "image pulled when missing",
			answers: map[string]fakeAnswer{"info": okInfo, "image": {err: errors.New("No such image")}, "pull": {out: "ok"}, "run": {out: "CapEff: 000001ffffffffff"}},
			wantRun: true,
		},
		{
			name:    "garbage probe output",
			answers: map[string]fakeAnswer{"info": okInfo, "image": {out: "sha256:1"}, "run": {out: "mount: permission denied"}},
			wantErr: "unexpected probe output", wantRun: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDocker{answers: tt.answers}
			err := CheckPrivileged(context.Background(), d, "kindest/node:test")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrNoPrivilegedDocker) || !strings.Contains(err.Error(), "--bootstrap embedded") {
					t.Errorf("error does not point at --bootstrap embedded: %v", err)
				}
			}
			ran := false
			for _, c := range d.calls {
				if strings.HasPrefix(c, "run --rm --privileged") {
					ran = true
				}
			}
			if ran != tt.wantRun {
				t.Errorf("privileged probe ran=%v want %v (calls %v)", ran, tt.wantRun, d.calls)
			}
		})
	}
}

// TestCheckPrivilegedLocalDocker runs the check against whatever Docker this
// machine has. It must either pass or fail with the --bootstrap embedded
// advice; on this project's CI machine dockerd only runs unprivileged
// containers (or is absent), so the failure path is what is exercised.
func TestCheckPrivilegedLocalDocker(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI on this machine")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := CheckPrivileged(ctx, CLI{}, "kindest/node:v1.36.0")
	if err == nil {
		t.Log("local Docker runs privileged containers: kind can be used here")
		return
	}
	t.Logf("local Docker check: %v", err)
	if !errors.Is(err, ErrNoPrivilegedDocker) && !strings.Contains(err.Error(), "pulling kind node image") {
		t.Fatalf("check failed without a clear reason: %v", err)
	}
}

// FuzzCheckPrivileged feeds arbitrary `docker info` and probe output to the
// check: it must never panic, and any failure must carry the
// --bootstrap embedded advice.
func FuzzCheckPrivileged(f *testing.F) {
	f.Add(`{"ServerVersion":"20.10.24","SecurityOptions":["name=seccomp,profile=default"]}`, "CapEff:\t000001ffffffffff\n")
	f.Add(`{"ServerVersion":"1","SecurityOptions":["name=rootless"]}`, "")
	f.Add(`not json`, "CapEff: zz")
	f.Add(`{}`, "CapEff:")
	f.Fuzz(func(t *testing.T, info, probe string) {
		d := &fakeDocker{answers: map[string]fakeAnswer{"info": {out: info}, "image": {out: "sha256:1"}, "run": {out: probe}}}
		err := CheckPrivileged(context.Background(), d, "img")
		if err != nil && !errors.Is(err, ErrNoPrivilegedDocker) {
			t.Fatalf("error without the embedded advice: %v", err)
		}
	})
}
