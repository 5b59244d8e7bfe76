package agent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/kiln-dev/kiln/pkg/agent"
	"github.com/kiln-dev/kiln/pkg/agent/actions"
	"github.com/kiln-dev/kiln/pkg/agent/actions/compresstest"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/syncbuf"
	"github.com/kiln-dev/kiln/pkg/workerapi"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
	"github.com/kiln-dev/kiln/templates"
)

const mac = "cc:48:3a:00:00:01"

// lab is one worker API server over loopback with a bbolt store that can
// be stopped and restarted on the same address.
type lab struct {
	t      *testing.T
	dbPath string
	addr   string
	mu     sync.Mutex
	st     *store.Bolt
	g      *grpc.Server
	seq    int
}

func (l *lab) start() {
	l.t.Helper()
	st, err := store.OpenBolt(l.dbPath, 5*time.Second)
	if err != nil {
		l.t.Fatal(err)
	}
	lis, err := net.Listen("tcp", l.addr)
	if err != nil {
		l.t.Fatal(err)
	}
	g := grpc.NewServer()
	workerapi.New(st, workerapi.Options{Logger: slog.New(slog.DiscardHandler)}).Register(g)
	go func() { _ = g.Serve(lis) }()
	l.mu.Lock()
	l.st, l.g = st, g
	l.mu.Unlock()
}

func (l *lab) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.g != nil {
		l.g.Stop()
		_ = l.st.Close()
		l.g, l.st = nil, nil
	}
}

func (l *lab) store() *store.Bolt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st
}

// add renders src for the machine and stores it as a new workflow.
func (l *lab) add(src string, m hardware.Machine, values map[string]string) string {
	l.t.Helper()
	tpl, err := workflow.RenderTemplate("test", []byte(src), workflow.RenderInput{Machine: m, Values: values})
	if err != nil {
		l.t.Fatal(err)
	}
	l.seq++
	w := workflow.New("", fmt.Sprintf("wf%02d", l.seq), m.Hostname, "test", tpl, time.Now().Add(time.Duration(l.seq)*time.Millisecond))
	if err := l.store().Create(context.Background(), w); err != nil {
		l.t.Fatal(err)
	}
	return w.ID()
}

// wait polls until cond holds for the workflow or the time is up.
func (l *lab) wait(id string, limit time.Duration, what string, cond func(*workflow.Workflow) bool) *workflow.Workflow {
	l.t.Helper()
	deadline := time.Now().Add(limit)
	var last *workflow.Workflow
	for time.Now().Before(deadline) {
		if st := l.store(); st != nil {
			if w, err := st.Get(context.Background(), id); err == nil {
				last = w
				if cond(w) {
					return w
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatalf("%s: %s not reached within %s; last state: %s", id, what, limit, dump(last))
	return nil
}

func (l *lab) waitDone(id string, limit time.Duration) *workflow.Workflow {
	return l.wait(id, limit, "a final state", func(w *workflow.Workflow) bool { return w.State.Terminal() })
}

func dump(w *workflow.Workflow) string {
	if w == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)", w.State, w.Reason)
	for _, a := range w.Tasks[0].Actions {
		fmt.Fprintf(&b, "\n  %s %s %s %q log=%q", a.Name, a.State, a.Duration(time.Now()), a.Message, a.Log)
	}
	return b.String()
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// buildDiskImage makes a 21 MiB disk image: an MBR partition table and one
// ext4 partition (1 MiB..end) holding /etc/hostname, a busybox shell for
// cexec and a kernel entry in /boot/grub/grub.cfg for kexec.
func buildDiskImage(t *testing.T, dir string) []byte {
	t.Helper()
	for _, tool := range []string{"sfdisk", "mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (apt install fdisk e2fsprogs mount): %v", tool, err)
		}
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("kiln-test-image\n"), 0o644)
	// A shell for cexec (busybox-static) and a kernel entry for kexec.
	if bb, err := os.ReadFile("/bin/busybox"); err == nil {
		_ = os.MkdirAll(filepath.Join(root, "bin"), 0o755)
		_ = os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755)
		_ = os.Symlink("busybox", filepath.Join(root, "bin/sh"))
		_ = os.MkdirAll(filepath.Join(root, "root"), 0o700)
	}
	_ = os.MkdirAll(filepath.Join(root, "boot/grub"), 0o755)
	_ = os.WriteFile(filepath.Join(root, "boot/vmlinuz-test"), []byte("not really a kernel"), 0o644)
	_ = os.WriteFile(filepath.Join(root, "boot/initrd-test"), []byte("not really an initrd"), 0o644)
	_ = os.WriteFile(filepath.Join(root, "boot/grub/grub.cfg"), []byte("menuentry 'Test' {\n\tlinux /boot/vmlinuz-test root=LABEL=cloudimg-rootfs ro console=ttyS0\n\tinitrd /boot/initrd-test\n}\n"), 0o644)
	part := filepath.Join(dir, "kn4-part.img")
	if err := os.WriteFile(part, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Truncate(part, 20<<20)
	run(t, "mkfs.ext4", "-q", "-F", "-L", "cloudimg-rootfs", "-E", "root_owner=0:0", "-d", root, part)
	partBytes, _ := os.ReadFile(part)
	disk := filepath.Join(dir, "kn4-disk.img")
	_ = os.WriteFile(disk, append(make([]byte, 1<<20), partBytes...), 0o600)
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "-q", disk)
	cmd.Stdin = strings.NewReader("label: dos\nstart=2048, type=83\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	img, _ := os.ReadFile(disk)
	return img
}

// checkFile mounts the partition read-only and checks one file.
func checkFile(t *testing.T, part, path, contents string, mode os.FileMode, uid, gid int) {
	t.Helper()
	mnt := t.TempDir()
	if err := unix.Mount(part, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("mounting %s: %v", part, err)
	}
	defer func() { _ = unix.Unmount(mnt, 0) }()
	p := filepath.Join(mnt, path)
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if string(got) != contents {
		t.Errorf("%s = %q, want %q", path, got, contents)
	}
	fi, _ := os.Stat(p)
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: mode %04o owner %d:%d, want %04o %d:%d", path, fi.Mode().Perm(), st.Uid, st.Gid, mode, uid, gid)
	}
	if host, err := os.ReadFile(filepath.Join(mnt, "etc/hostname")); err != nil || string(host) != "kiln-test-image\n" {
		t.Errorf("the image's own /etc/hostname is %q, %v", host, err)
	}
}

func checkDir(t *testing.T, part, path string, mode os.FileMode, uid, gid int) {
	t.Helper()
	mnt := t.TempDir()
	if err := unix.Mount(part, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("mounting %s: %v", part, err)
	}
	defer func() { _ = unix.Unmount(mnt, 0) }()
	fi, err := os.Stat(filepath.Join(mnt, path))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: %v owner %d:%d, want dir %04o %d:%d", path, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}

const ownerTemplate = `version: "0.1"
name: owners
global_timeout: 300
tasks:
- name: install
  worker: "{{ .device_1 }}"
  volumes: ["/dev:/dev"]
  actions:
  - name: stream
    image: 127.0.0.1/embedded/image2disk
    timeout: {{ .stream_timeout }}
    environment:
      IMG_URL: "{{ .image_url }}"
      DEST_DISK: "{{ index .Hardware.Disks 0 }}"
      COMPRESSED: "{{ .compressed }}"
      PROGRESS_INTERVAL_SECONDS: "1"
  - name: authorized-keys
    image: quay.io/tinkerbell/actions/writefile:latest
    timeout: 30
    environment:
      DEST_DISK: "{{ formatPartition (index .Hardware.Disks 0) 1 }}"
      FS_TYPE: ext4
      DEST_PATH: /home/kiln/.ssh/authorized_keys
      CONTENTS: "ssh-ed25519 AAAA kiln@test\n"
      MODE: "0640"
      DIRMODE: "0750"
      UID: "1000"
      GID: "1001"
`

const chrootTemplate = `version: "0.1"
name: chroot
global_timeout: 300
tasks:
- name: install
  worker: "{{ .device_1 }}"
  actions:
  - name: stream
    image: 127.0.0.1/embedded/image2disk
    timeout: 60
    environment:
      IMG_URL: "{{ .image_url }}"
      DEST_DISK: "{{ index .Hardware.Disks 0 }}"
      COMPRESSED: "true"
  - name: run-in-chroot
    image: quay.io/tinkerbell/actions/cexec:latest
    timeout: 30
    environment:
      BLOCK_DEVICE: "{{ formatPartition (index .Hardware.Disks 0) 1 }}"
      FS_TYPE: ext4
      CMD_LINE: "echo chroot-ok > /root/proof; test -d /proc/self; echo hello-from-chroot $GREETING"
      GREETING: hi
  - name: kexec-into-os
    image: quay.io/tinkerbell/actions/kexec:latest
    timeout: 30
    pid: host
    environment:
      BLOCK_DEVICE: "{{ formatPartition (index .Hardware.Disks 0) 1 }}"
      FS_TYPE: ext4
`

// TestAgentProvisionsLoopDevice runs server and agent over loopback against a
// real loop device: kiln's default Ubuntu template with a gzip image, the
// xz and zstd variants, a truncated image, an action timeout, a server
// restart in the middle of a workflow and an agent started before its server.
func TestAgentProvisionsLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: the loop-device integration test needs root (losetup, mount)")
	}
	dir := t.TempDir()
	img := buildDiskImage(t, dir)

	gate := make(chan struct{})
	files := map[string][]byte{}
	for k, c := range map[string]actions.Compression{"gz": actions.Gzip, "xz": actions.XZ, "zst": actions.Zstd} {
		files["/kn4-disk.img."+k] = compresstest.Compress(t, c, img)
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch name := r.URL.Path; {
		case name == "/truncated.img.gz":
			body := files["/kn4-disk.img.gz"]
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body[:len(body)*6/10])
		case name == "/stall.img":
			w.Header().Set("Content-Length", strconv.Itoa(len(img)))
			_, _ = w.Write(img[:4096])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case name == "/gated.img.gz":
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
			_, _ = w.Write(files["/kn4-disk.img.gz"])
		case files[name] != nil:
			_, _ = w.Write(files[name])
		default:
			http.NotFound(w, r)
		}
	}))
	defer web.Close()

	target := filepath.Join(dir, "kn4-target.img")
	_ = os.WriteFile(target, img, 0o600) // to see whether the kernel finds the partition
	loop := run(t, "losetup", "--find", "--show", "--partscan", target)
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	part := workflow.FormatPartition(loop, 1)
	mapPartition(t, loop, part, target)
	// Start from a blank disk: image2disk must write everything.
	if err := os.WriteFile(loop, make([]byte, len(img)), 0); err != nil {
		t.Fatal(err)
	}
	m := hardware.Machine{Hostname: "kn4-machine", MAC: mac, IPAddress: "10.10.50.11", Netmask: "255.255.255.0",
		Gateway: "10.10.50.1", Nameservers: []string{"10.10.50.2"}, Disk: loop}

	// Reserve a loopback port, then start the agent before the server.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, dbPath: filepath.Join(dir, "kn4-workflows.db"), addr: lis.Addr().String()}
	_ = lis.Close()
	var reboots []int
	var kexecLoaded string // kernel|initrd|cmdline as the kexec action loaded them
	var rebootMu sync.Mutex
	var agentLog syncbuf.Buffer
	a, err := agent.New(agent.Options{
		Config:  agent.Config{WorkerID: mac, Authority: l.addr},
		PollMin: 50 * time.Millisecond, PollMax: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&agentLog, nil)),
		Runtime: actions.Runtime{TempDir: dir, Reboot: func(cmd int) error {
			rebootMu.Lock()
			reboots = append(reboots, cmd)
			rebootMu.Unlock()
			return nil
		}, KexecLoad: func(kernel, initrd *os.File, cmdline string) error {
			k, _ := io.ReadAll(kernel)
			i, _ := io.ReadAll(initrd)
			rebootMu.Lock()
			kexecLoaded = fmt.Sprintf("%s|%s|%s", k, i, cmdline)
			rebootMu.Unlock()
			return nil
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	agentDone := make(chan struct{})
	go func() { defer close(agentDone); _ = a.Run(ctx) }()
	defer func() { cancel(); <-agentDone; l.stop() }()
	time.Sleep(400 * time.Millisecond) // the agent polls a server that is not there yet
	l.start()

	t.Run("default ubuntu template, gzip image", func(t *testing.T) {
		src, _ := templates.FS.ReadFile("workflows/ubuntu.yaml")
		id := l.add(string(src), m, map[string]string{"image_url": web.URL + "/kn4-disk.img.gz", "metadata_url": "http://127.0.0.1:7172"})
		w := l.waitDone(id, 60*time.Second)
		if w.State != workflow.StateSuccess {
			t.Fatalf("workflow %s", dump(w))
		}
		t.Logf("workflow %s", dump(w))
		var got []int
		for i := 0; i < 400 && len(got) == 0; i++ { // the agent reboots right after its SUCCESS report
			time.Sleep(50 * time.Millisecond)
			rebootMu.Lock()
			got = append([]int(nil), reboots...)
			rebootMu.Unlock()
		}
		if len(got) != 1 || got[0] != unix.LINUX_REBOOT_CMD_RESTART {
			t.Errorf("reboots = %v, want one RESTART after the SUCCESS report", got)
		}
		netplan := w.Tasks[0].Actions[1].Environment["CONTENTS"]
		checkFile(t, part, "etc/netplan/config.yaml", netplan, 0o600, 0, 0)
		checkFile(t, part, "etc/cloud/ds-identify.cfg", "datasource: Ec2\n", 0o600, 0, 0)
		checkDir(t, part, "etc/cloud/cloud.cfg.d", 0o700, 0, 0)
		if !strings.Contains(strings.Join(w.Tasks[0].Actions[0].Log, "\n"), "image2disk: done") {
			t.Errorf("image2disk log tail on the server: %q", w.Tasks[0].Actions[0].Log)
		}
	})

	for _, kind := range []string{"xz", "zst"} {
		t.Run(kind+" image, owners and modes", func(t *testing.T) {
			id := l.add(ownerTemplate, m, map[string]string{"image_url": web.URL + "/kn4-disk.img." + kind, "compressed": "true", "stream_timeout": "60"})
			if w := l.waitDone(id, 60*time.Second); w.State != workflow.StateSuccess {
				t.Fatalf("workflow %s", dump(w))
			}
			checkFile(t, part, "home/kiln/.ssh/authorized_keys", "ssh-ed25519 AAAA kiln@test\n", 0o640, 1000, 1001)
			checkDir(t, part, "home/kiln/.ssh", 0o750, 1000, 1001)
			checkDir(t, part, "home", 0o750, 1000, 1001)
		})
	}

	t.Run("cexec in a chroot, kexec from grub.cfg", func(t *testing.T) {
		if _, err := os.Stat("/bin/busybox"); err != nil {
			t.Skip("busybox-static is not installed: no shell to put into the test image")
		}
		rebootMu.Lock()
		reboots = nil
		rebootMu.Unlock()
		id := l.add(chrootTemplate, m, map[string]string{"image_url": web.URL + "/kn4-disk.img.gz"})
		w := l.waitDone(id, 60*time.Second)
		if w.State != workflow.StateSuccess {
			t.Fatalf("workflow %s", dump(w))
		}
		if log := strings.Join(w.Tasks[0].Actions[1].Log, "\n"); !strings.Contains(log, "hello-from-chroot hi") {
			t.Errorf("cexec output not streamed to the server: %q", log)
		}
		checkFile(t, part, "root/proof", "chroot-ok\n", 0o644, 0, 0)
		if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), dir) {
			t.Errorf("mounts left behind below %s:\n%s", dir, mounts)
		}
		var got []int
		for i := 0; i < 40 && len(got) == 0; i++ {
			time.Sleep(50 * time.Millisecond)
			rebootMu.Lock()
			got = append([]int(nil), reboots...)
			rebootMu.Unlock()
		}
		rebootMu.Lock()
		loaded := kexecLoaded
		rebootMu.Unlock()
		if loaded != "not really a kernel|not really an initrd|root=LABEL=cloudimg-rootfs ro console=ttyS0" {
			t.Errorf("kexec loaded %q", loaded)
		}
		if len(got) != 1 || got[0] != unix.LINUX_REBOOT_CMD_KEXEC {
			t.Errorf("reboots = %v, want one KEXEC after the SUCCESS report", got)
		}
	})

	t.Run("truncated image fails", func(t *testing.T) {
		id := l.add(ownerTemplate, m, map[string]string{"image_url": web.URL + "/truncated.img.gz", "compressed": "true", "stream_timeout": "60"})
		w := l.waitDone(id, 30*time.Second)
		a0 := w.Tasks[0].Actions[0]
		if w.State != workflow.StateFailed || a0.State != workflow.StateFailed || !strings.Contains(a0.Message, "truncated") {
			t.Fatalf("workflow %s", dump(w))
		}
		if w.Tasks[0].Actions[1].State != workflow.StatePending {
			t.Error("the action after a failed image2disk ran")
		}
		if !strings.Contains(strings.Join(a0.Log, "\n"), "FAILED: image2disk") {
			t.Errorf("failure not in the server's log tail: %q", a0.Log)
		}
	})

	t.Run("action timeout", func(t *testing.T) {
		id := l.add(ownerTemplate, m, map[string]string{"image_url": web.URL + "/stall.img", "compressed": "false", "stream_timeout": "2"})
		w := l.waitDone(id, 30*time.Second)
		a0 := w.Tasks[0].Actions[0]
		if w.State != workflow.StateTimeout || a0.State != workflow.StateTimeout || !strings.Contains(a0.Message, "timed out after 2s") {
			t.Fatalf("workflow %s", dump(w))
		}
		if d := a0.Duration(time.Now()); d < 2*time.Second || d > 25*time.Second { // 2 s, plus scheduling on a loaded machine
			t.Errorf("timed-out action ran %s", d)
		}
	})

	t.Run("server restart mid-workflow resumes", func(t *testing.T) {
		id := l.add(ownerTemplate, m, map[string]string{"image_url": web.URL + "/gated.img.gz", "compressed": "true", "stream_timeout": "60"})
		l.wait(id, 20*time.Second, "stream RUNNING", func(w *workflow.Workflow) bool {
			return w.Tasks[0].Actions[0].State == workflow.StateRunning
		})
		l.stop()
		time.Sleep(700 * time.Millisecond) // agent's log flushes fail meanwhile
		close(gate)                        // the image finishes while the server is down
		time.Sleep(700 * time.Millisecond) // the SUCCESS report is retried
		l.start()
		w := l.waitDone(id, 60*time.Second)
		if w.State != workflow.StateSuccess {
			t.Fatalf("workflow after restart %s", dump(w))
		}
		checkFile(t, part, "home/kiln/.ssh/authorized_keys", "ssh-ed25519 AAAA kiln@test\n", 0o640, 1000, 1001)
	})

	logText := agentLog.String()
	if !strings.Contains(logText, "worker API unreachable") || !strings.Contains(logText, "worker API reachable again") {
		t.Errorf("agent did not report losing and regaining the server:\n%s", tail(logText, 20))
	}
}

// mapPartition makes sure part (e.g. /dev/loop0p1) exists. Kernels without
// MBR partition support (CONFIG_MSDOS_PARTITION=n, as in some VM kernels)
// never create it; then partition 1 (1 MiB .. end, as buildDiskImage lays it
// out) is mapped with an offset loop device on the same file and given the
// partition's name, so templates using formatPartition run unchanged.
func mapPartition(t *testing.T, loop, part, file string) {
	t.Helper()
	for i := 0; i < 20; i++ {
		if _, err := os.Stat(part); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the kernel did not create %s (no MBR partition support?); mapping partition 1 with an offset loop device", part)
	pdev := run(t, "losetup", "--find", "--show", "--offset", "1048576", file)
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", pdev).Run() })
	var st unix.Stat_t
	if err := unix.Stat(pdev, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(part, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		t.Fatalf("creating %s: %v", part, err)
	}
	t.Cleanup(func() { _ = os.Remove(part) })
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
