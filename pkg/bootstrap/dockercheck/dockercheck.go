// Package dockercheck answers one question before kiln uses kind: can this
// Docker run the privileged containers kind's nodes need? It talks to Docker
// only through the docker CLI (the Docker interface), so tests replace that
// boundary with a fake.
package dockercheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Docker runs docker CLI commands; the real one execs the docker binary
// (which kind itself also shells out to).
type Docker interface {
	Run(ctx context.Context, args ...string) (stdout []byte, err error)
}

// CLI is the Docker implementation that runs the docker binary.
type CLI struct{}

// Run implements Docker; stderr is folded into the error.
func (CLI) Run(ctx context.Context, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return stdout.Bytes(), err
		}
		return stdout.Bytes(), fmt.Errorf("%w: %s", err, msg)
	}
	return stdout.Bytes(), nil
}

// ErrNoPrivilegedDocker is wrapped by every capability-check failure.
var ErrNoPrivilegedDocker = errors.New("Docker cannot run the privileged containers kind needs; use --bootstrap embedded, which runs etcd and kube-apiserver inside kiln and needs no Docker")

// capSysAdmin is the bit of CAP_SYS_ADMIN in /proc/PID/status CapEff.
const capSysAdmin = 21

// CheckPrivileged verifies that Docker can run kind's node containers: the
// daemon answers, and a --privileged container started from image really
// holds CAP_SYS_ADMIN and can mount (kind nodes run systemd, containerd and
// kubelet, which need both). image is the node image kind will use, so the
// probe pulls nothing kind would not pull anyway.
func CheckPrivileged(ctx context.Context, d Docker, image string) error {
	out, err := d.Run(ctx, "info", "--format", "{{json .}}")
	if err != nil {
		return fmt.Errorf("%w (the Docker daemon is not reachable: %v)", ErrNoPrivilegedDocker, err)
	}
	var info struct {
		ServerVersion   string   `json:"ServerVersion"`
		SecurityOptions []string `json:"SecurityOptions"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &info); err != nil {
		return fmt.Errorf("%w (cannot read `docker info`: %v)", ErrNoPrivilegedDocker, err)
	}
	if info.ServerVersion == "" {
		return fmt.Errorf("%w (`docker info` reports no server; is the daemon running?)", ErrNoPrivilegedDocker)
	}
	for _, o := range info.SecurityOptions {
		if strings.Contains(o, "name=rootless") {
			return fmt.Errorf("%w (Docker %s runs rootless; privileged containers get no real host privileges)", ErrNoPrivilegedDocker, info.ServerVersion)
		}
	}
	if _, err := d.Run(ctx, "image", "inspect", "--format", "{{.Id}}", image); err != nil {
		if _, err := d.Run(ctx, "pull", image); err != nil {
			return fmt.Errorf("pulling kind node image %s for the privilege check: %w (kind needs this image: load it with `docker load`, or use --bootstrap embedded)", image, err)
		}
	}
	out, err = d.Run(ctx, "run", "--rm", "--privileged", "--network", "none", "--entrypoint", "/bin/sh", image,
		"-c", "mount -t tmpfs kiln-probe /mnt && grep '^CapEff:' /proc/self/status")
	if err != nil {
		return fmt.Errorf("%w (a privileged test container failed: %v)", ErrNoPrivilegedDocker, err)
	}
	capEff, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "CapEff:")
	if !ok {
		return fmt.Errorf("%w (unexpected probe output %q)", ErrNoPrivilegedDocker, strings.TrimSpace(string(out)))
	}
	caps, err := strconv.ParseUint(strings.TrimSpace(capEff), 16, 64)
	if err != nil {
		return fmt.Errorf("%w (unexpected CapEff %q)", ErrNoPrivilegedDocker, capEff)
	}
	if caps&(1<<capSysAdmin) == 0 {
		return fmt.Errorf("%w (a --privileged container lacks CAP_SYS_ADMIN: CapEff=%s)", ErrNoPrivilegedDocker, strings.TrimSpace(capEff))
	}
	return nil
}
