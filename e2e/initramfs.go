//go:build e2e

// Package e2e holds kiln's end-to-end tests: real firmware in QEMU (TCG)
// netbooting from kiln inside network namespaces. Run with `make e2e`.
package e2e

import (
	"bytes"
	"fmt"
	"os"
)

// cpioEntry is one file of a newc cpio archive.
type cpioEntry struct {
	name  string
	mode  uint32 // including the file type bits
	data  []byte
	major uint32 // device numbers for character devices
	minor uint32
}

const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFCHR = 0o020000
)

// writeCPIO encodes entries as an uncompressed newc archive, the format the
// kernel unpacks as an initramfs.
func writeCPIO(entries []cpioEntry) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	write := func(ino int, e cpioEntry) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.major, e.minor, len(e.name)+1, 0)
		b.WriteString(e.name)
		b.WriteByte(0)
		pad()
		b.Write(e.data)
		pad()
	}
	for i, e := range entries {
		write(i+1, e)
	}
	write(0, cpioEntry{name: "TRAILER!!!"})
	return b.Bytes()
}

// markerInitramfs builds an initramfs whose init prints the kernel command
// line between markers on the console and powers the VM off.
func markerInitramfs(busybox string) ([]byte, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("read %s (apt install busybox-static): %w", busybox, err)
	}
	init := "#!/bin/busybox sh\n" +
		"/bin/busybox mount -t proc proc /proc\n" +
		"echo \"KILN-E2E-BOOTED cmdline=[$(/bin/busybox cat /proc/cmdline)]\"\n" +
		"/bin/busybox poweroff -f\n"
	return writeCPIO([]cpioEntry{
		{name: "bin", mode: sIFDIR | 0o755},
		{name: "dev", mode: sIFDIR | 0o755},
		{name: "proc", mode: sIFDIR | 0o755},
		{name: "dev/console", mode: sIFCHR | 0o600, major: 5, minor: 1},
		{name: "bin/busybox", mode: sIFREG | 0o755, data: bb},
		{name: "init", mode: sIFREG | 0o755, data: []byte(init)},
	}), nil
}
