//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/hook"
	"github.com/kiln-dev/kiln/pkg/workerapi"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
)

const agentInitTemplate = `version: "0.1"
name: agent-init
global_timeout: 600
tasks:
- name: install
  worker: "{{ .device_1 }}"
  actions:
  - name: stream
    image: quay.io/tinkerbell/actions/image2disk:latest
    timeout: 300
    environment:
      IMG_URL: "{{ .image_url }}"
      DEST_DISK: "{{ index .Hardware.Disks 0 }}"
      COMPRESSED: "true"
  - name: mark
    image: quay.io/tinkerbell/actions/writefile:latest
    timeout: 60
    environment:
      DEST_DISK: "{{ formatPartition (index .Hardware.Disks 0) 1 }}"
      FS_TYPE: ext4
      DEST_PATH: /etc/kiln/provisioned
      CONTENTS: "{{ .hardware.metadata.name }}\n"
      MODE: "0640"
      UID: "0"
      GID: "4"
  - name: reboot
    image: quay.io/tinkerbell/actions/reboot:latest
    timeout: 60
`

// TestAgentAsInitQEMU boots kiln's in-memory OS (kiln-agent as /init) in QEMU with
// user-mode networking and a blank virtio disk, and no kiln_modules argument:
// the agent must mount the kernel file systems, load the modules the image
// lists in /etc/kiln/modules, find its NIC by hw_addr, get an address by
// DHCP (QEMU's built-in server), reach the worker API and the image server on
// the host's loopback through 10.0.2.2, run image2disk, writefile and reboot,
// and report every action. QEMU exits on the reboot (-no-reboot); the test
// then reads the written file straight out of the disk image.
func TestAgentAsInitQEMU(t *testing.T) {
	for _, tool := range []string{"sfdisk", "mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt install fdisk e2fsprogs)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	agent := buildCommand(t, ctx, dir, "kiln-agent")
	res, err := hook.Build(ctx, hook.Options{Init: agent, OutputDir: dir, SkipMissing: true})
	if err != nil {
		t.Fatal(err)
	}

	// A 24 MiB disk image: MBR, one ext4 partition from 1 MiB.
	part := filepath.Join(dir, "part.img")
	_ = os.WriteFile(part, nil, 0o600)
	_ = os.Truncate(part, 23<<20)
	run := func(name string, args ...string) {
		if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	run("mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", part)
	partBytes, _ := os.ReadFile(part)
	img := filepath.Join(dir, "image.raw")
	_ = os.WriteFile(img, append(make([]byte, 1<<20), partBytes...), 0o600)
	sf := exec.CommandContext(ctx, "sfdisk", "--no-reread", "--no-tell-kernel", "-q", img)
	sf.Stdin = strings.NewReader("label: dos\nstart=2048, type=83\n")
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	gzipFile(t, img, img+".gz")

	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpSrv := &http.Server{Handler: http.FileServer(http.Dir(dir)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = httpSrv.Serve(web) }()
	defer httpSrv.Close()
	webPort := web.Addr().(*net.TCPAddr).Port

	const mac = "52:54:00:4b:00:01"
	m := hardware.Machine{Hostname: "kn4-vm", MAC: mac, IPAddress: "10.0.2.15", Netmask: "255.255.255.0", Gateway: "10.0.2.2",
		Nameservers: []string{"10.0.2.3"}, Disk: "/dev/vda"}
	inv := &hardware.Inventory{Machines: []hardware.Machine{m}}
	wfs, err := workflow.ForInventory(inv, "agent-init", []byte(agentInitTemplate),
		map[string]string{"image_url": fmt.Sprintf("http://10.0.2.2:%d/image.raw.gz", webPort)}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(filepath.Join(dir, "workflows.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := store.Ensure(ctx, st, wfs); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	workerapi.New(st, workerapi.Options{Logger: slog.New(slog.DiscardHandler)}).Register(g)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	grpcPort := lis.Addr().(*net.TCPAddr).Port

	disk := filepath.Join(dir, "disk.raw")
	_ = os.WriteFile(disk, nil, 0o600)
	_ = os.Truncate(disk, int64(len(partBytes))+1<<20)
	start := time.Now()
	v := startVM(t, ctx, "kn4-agent", "-machine", "q35", "-m", "1024",
		"-kernel", res.Kernel, "-initrd", res.Initramfs,
		"-append", fmt.Sprintf("console=ttyS0,115200 panic=-1 worker_id=%s hw_addr=%s grpc_authority=10.0.2.2:%d", mac, mac, grpcPort),
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac="+mac,
		"-drive", "file="+disk+",if=virtio,format=raw")

	w := waitWorkflow(t, ctx, st, "kn4-vm", func(w *workflow.Workflow) bool { return w.State.Terminal() })
	if w.State != workflow.StateSuccess {
		t.Fatalf("workflow %s: %s", w.State, w.Reason)
	}
	select {
	case <-v.done: // the reboot ended QEMU (-no-reboot)
	case <-time.After(60 * time.Second):
		t.Fatal("QEMU still running a minute after the reboot action reported SUCCESS")
	}
	total := time.Since(start)

	// Read /etc/kiln/provisioned out of partition 1 of the disk image.
	written, _ := os.ReadFile(disk)
	out := filepath.Join(dir, "out-part.img")
	_ = os.WriteFile(out, written[1<<20:], 0o600)
	cat, err := exec.CommandContext(ctx, "debugfs", "-R", "cat /etc/kiln/provisioned", out).Output()
	if err != nil || string(cat) != "kn4-vm\n" {
		t.Fatalf("/etc/kiln/provisioned on the disk = %q, %v", cat, err)
	}
	stat, _ := exec.CommandContext(ctx, "debugfs", "-R", "stat /etc/kiln/provisioned", out).Output()
	if !strings.Contains(string(stat), "Mode:  0640") || !strings.Contains(string(stat), "Group:     4") {
		t.Errorf("owner/mode on disk:\n%s", stat)
	}
	a := w.Tasks[0].Actions
	t.Logf("kiln-agent as /init in QEMU TCG: power-on to workflow SUCCESS and reboot in %s (image2disk %s, writefile %s)",
		total.Round(100*time.Millisecond), a[0].Duration(time.Now()).Round(10*time.Millisecond), a[1].Duration(time.Now()).Round(10*time.Millisecond))
}
