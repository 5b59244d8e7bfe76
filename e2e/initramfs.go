//go:build e2e

// Package e2e holds kiln's end-to-end tests: real firmware in QEMU (TCG)
// netbooting from kiln inside network namespaces. Run with `make e2e`.
package e2e

import (
	"bytes"
	"fmt"

	"github.com/kiln-dev/kiln/pkg/initramfs"
)

// markerInitramfs builds an initramfs (uncompressed newc cpio) whose init
// prints the kernel command line between markers on the console and powers
// the VM off.
func markerInitramfs(busybox string) ([]byte, error) {
	init := "#!/bin/busybox sh\n" +
		"/bin/busybox mount -t proc proc /proc\n" +
		"echo \"KILN-E2E-BOOTED cmdline=[$(/bin/busybox cat /proc/cmdline)]\"\n" +
		"/bin/busybox poweroff -f\n"
	a := initramfs.New()
	if err := a.File("bin/busybox", busybox, 0o755); err != nil {
		return nil, fmt.Errorf("read %s (apt install busybox-static): %w", busybox, err)
	}
	for _, err := range []error{
		a.Dir("bin", 0o755),
		a.Dir("dev", 0o755),
		a.Dir("proc", 0o755),
		a.CharDev("dev/console", 0o600, 5, 1),
		a.Bytes("init", 0o755, []byte(init)),
	} {
		if err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	if err := a.WriteCPIO(&b); err != nil {
		return nil, fmt.Errorf("write the marker initramfs: %w", err)
	}
	return b.Bytes(), nil
}
