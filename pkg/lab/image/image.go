// Package image builds the lab's test OS: a small raw disk image that boots
// on its own from disk under both legacy BIOS (SeaBIOS) and UEFI (OVMF) and,
// on every boot, brings up its network, reads its hostname from kiln's
// EC2-style metadata service and phones home to kiln. In production the same
// workflow streams Ubuntu; in the lab this image stands in for it.
//
// Layout (GPT, like an Ubuntu raw image): partition 1 is the EFI system
// partition (FAT, \EFI\BOOT\BOOTX64.EFI = GRUB x86_64-efi), partition 2 the
// ext4 root file system labelled "kilnroot" (kernel, initramfs, grub.cfg and
// /etc/kiln/kiln.env), partition 3 a BIOS boot partition holding GRUB's
// i386-pc core image, which the protective MBR's boot code loads. The OS
// itself runs from the initramfs: busybox plus the NIC and disk drivers.
package image

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/hook"
	"github.com/kiln-dev/kiln/pkg/initramfs"
	"github.com/kiln-dev/kiln/pkg/kmod"
)

//go:embed files/init.sh
var initScript []byte

//go:embed files/udhcpc.sh
var udhcpcScript []byte

// RootLabel is the file system label of the root partition.
const RootLabel = "kilnroot"

// RootPartition is the partition number of the root file system, where a
// workflow's writefile action puts etc/kiln/kiln.env.
const RootPartition = 2

// EnvPath is the settings file on the root partition (KILN_URL=…).
const EnvPath = "etc/kiln/kiln.env"

// Modules are the drivers the test OS loads: NICs and disks QEMU offers.
var Modules = []string{"virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "e1000", "e1000e", "ahci", "ata_piix", "sd_mod", "nvme", "crc32c_generic", "ext4"}

// Applets are the busybox commands linked into the test OS.
var Applets = []string{"sh", "mount", "umount", "insmod", "modprobe", "ip", "udhcpc", "wget", "hostname", "cat", "sleep",
	"mkdir", "findfs", "sed", "grep", "cut", "awk", "head", "ls", "uname", "sync", "poweroff", "reboot", "dmesg", "ps", "df", "tr", "date", "echo", "vi", "timeout"}

// Fixed identifiers keep builds of the same inputs alike.
const (
	diskGUID = "6B696C6E-6C61-4200-8000-000000000001"
	rootUUID = "6b696c6e-726f-6f74-8000-000000000002"
	espVolID = "6B494C4E"
)

// Options control a build.
type Options struct {
	// Output is the raw image file to write.
	Output string
	// SizeMiB is the disk size; default 64.
	SizeMiB int
	// Kernel is the kernel image; default the newest /boot/vmlinuz-*.
	Kernel string
	// ModulesDir is the kernel's module tree; default /lib/modules/<version>.
	ModulesDir string
	// Busybox is a static busybox; default /bin/busybox.
	Busybox string
	// GrubDir holds GRUB's i386-pc and x86_64-efi module directories;
	// default /usr/lib/grub.
	GrubDir string
	// KilnURL, when set, is written to etc/kiln/kiln.env as the default
	// kiln base URL (a workflow's writefile usually writes it instead).
	KilnURL string
	// Cmdline is appended to the kernel command line.
	Cmdline string
	// Log receives one line per step; may be nil.
	Log func(step string, took time.Duration)
}

// Result describes a finished image.
type Result struct {
	Path          string `json:"path"`
	SizeBytes     int64  `json:"sizeBytes"`
	KernelVersion string `json:"kernelVersion"`
	// RootOffset is the byte offset of the root partition in the image.
	RootOffset int64 `json:"rootOffset"`
}

const sector = 512

// layout in 512-byte sectors.
type layout struct {
	biosStart, biosSize int64
	espStart, espSize   int64
	rootStart, rootSize int64
	total               int64
}

func newLayout(sizeMiB int) (layout, error) {
	const mib = 2048
	l := layout{biosStart: 1 * mib, biosSize: 1 * mib, espStart: 2 * mib, espSize: 16 * mib}
	l.rootStart = l.espStart + l.espSize
	l.total = int64(sizeMiB) * mib
	// Leave 1 MiB at the end for the backup GPT.
	l.rootSize = l.total - l.rootStart - mib
	if l.rootSize < 24*mib {
		return l, fmt.Errorf("a %d MiB disk is too small for the lab image; use at least 64 MiB", sizeMiB)
	}
	return l, nil
}

// Tools lists the host programs a build runs.
var Tools = []string{"grub-mkimage", "mkfs.ext4", "mkfs.fat", "mmd", "mcopy", "sfdisk"}

// CheckTools reports the missing host programs with the Debian packages that provide them.
func CheckTools() error {
	pkgs := map[string]string{"grub-mkimage": "grub-common", "mkfs.ext4": "e2fsprogs", "mkfs.fat": "dosfstools", "mmd": "mtools", "mcopy": "mtools", "sfdisk": "fdisk"}
	var missing []string
	for _, t := range Tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", t, pkgs[t]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("building the lab image needs %s; install them with apt-get (also grub-pc-bin and grub-efi-amd64-bin)", strings.Join(missing, ", "))
	}
	return nil
}

// Build writes the image to opts.Output.
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.Output == "" {
		return nil, errors.New("no output file given for the lab image")
	}
	if opts.SizeMiB == 0 {
		opts.SizeMiB = 64
	}
	if opts.Busybox == "" {
		opts.Busybox = "/bin/busybox"
	}
	if opts.GrubDir == "" {
		opts.GrubDir = "/usr/lib/grub"
	}
	if opts.Log == nil {
		opts.Log = func(string, time.Duration) {}
	}
	if err := CheckTools(); err != nil {
		return nil, err
	}
	for _, d := range []string{"i386-pc", "x86_64-efi"} {
		if _, err := os.Stat(filepath.Join(opts.GrubDir, d, "normal.mod")); err != nil {
			return nil, fmt.Errorf("GRUB %s modules are missing in %s (apt-get install grub-pc-bin grub-efi-amd64-bin): %w", d, opts.GrubDir, err)
		}
	}
	if err := hook.CheckStatic(opts.Busybox); err != nil {
		return nil, fmt.Errorf("busybox: %w (apt-get install busybox-static)", err)
	}
	lay, err := newLayout(opts.SizeMiB)
	if err != nil {
		return nil, err
	}
	if opts.Kernel == "" {
		if opts.Kernel, err = hook.FindKernel("/boot"); err != nil {
			return nil, err
		}
	}
	kf, err := os.Open(opts.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	kver, err := hook.KernelVersion(kf)
	kf.Close()
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", opts.Kernel, err)
	}
	if opts.ModulesDir == "" {
		opts.ModulesDir = filepath.Join("/lib/modules", kver)
	}

	work, err := os.MkdirTemp("", "kiln-lab-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	step := func(name string, fn func() error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		if err := fn(); err != nil {
			return fmt.Errorf("lab image: %s: %w", name, err)
		}
		opts.Log(name, time.Since(start))
		return nil
	}
	rootDir := filepath.Join(work, "root")
	if err := step("initramfs with busybox and drivers", func() error {
		return writeInitramfs(opts, kver, filepath.Join(rootDir, "boot", "initrd.img"))
	}); err != nil {
		return nil, err
	}
	if err := step("root file system contents", func() error { return populateRoot(opts, rootDir) }); err != nil {
		return nil, err
	}
	rootImg := filepath.Join(work, "root.img")
	if err := step("ext4 root file system", func() error {
		return run(ctx, []string{"E2FSPROGS_FAKE_TIME=1700000000"}, "mkfs.ext4", "-q", "-F", "-L", RootLabel, "-U", rootUUID,
			"-E", "hash_seed="+rootUUID+",root_owner=0:0", "-O", "^metadata_csum_seed", "-d", rootDir, rootImg, fmt.Sprintf("%dk", lay.rootSize/2))
	}); err != nil {
		return nil, err
	}
	espImg := filepath.Join(work, "esp.img")
	if err := step("EFI system partition with GRUB x86_64-efi", func() error { return buildESP(ctx, opts, work, espImg, lay) }); err != nil {
		return nil, err
	}
	coreImg := filepath.Join(work, "core.img")
	if err := step("GRUB i386-pc core image", func() error {
		return grubImage(ctx, opts, work, "i386-pc", coreImg, "biosdisk")
	}); err != nil {
		return nil, err
	}
	tmp := opts.Output + ".tmp"
	if err := step("GPT disk with BIOS and UEFI boot", func() error {
		return assemble(ctx, opts, tmp, lay, espImg, rootImg, coreImg)
	}); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, opts.Output); err != nil {
		return nil, err
	}
	return &Result{Path: opts.Output, SizeBytes: lay.total * sector, KernelVersion: kver, RootOffset: lay.rootStart * sector}, nil
}

func writeInitramfs(opts Options, kver, out string) error {
	ix, err := kmod.Load(opts.ModulesDir)
	if err != nil {
		return err
	}
	paths, err := ix.Resolve(Modules...)
	if err != nil {
		return err
	}
	a := initramfs.New()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(a.Bytes("init", 0o755, initScript))
	add(a.Bytes("etc/udhcpc.script", 0o755, udhcpcScript))
	add(a.File("bin/busybox", opts.Busybox, 0o755))
	for _, ap := range Applets {
		add(a.Symlink("bin/"+ap, "busybox"))
	}
	add(a.CharDev("dev/console", 0o600, 5, 1))
	add(a.CharDev("dev/null", 0o666, 1, 3))
	for _, d := range []string{"proc", "sys", "mnt/root", "run", "root"} {
		add(a.Dir(d, 0o755))
	}
	add(a.Dir("tmp", 0o1777))
	add(a.Bytes("etc/hostname", 0o644, []byte("kiln-lab\n")))
	add(a.Bytes("etc/os-release", 0o644, []byte("NAME=\"kiln lab test OS\"\nID=kiln-lab\n")))
	for _, p := range paths {
		add(a.File("lib/modules/"+kver+"/"+p, filepath.Join(ix.Dir, p), 0o644))
	}
	add(a.Bytes("lib/modules/"+kver+"/modules.dep", 0o644, []byte(ix.DepLines(paths))))
	add(a.Bytes(hook.ModuleListPath, 0o644, []byte(strings.Join(paths, "\n")+"\n")))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := a.WriteGzip(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func populateRoot(opts Options, root string) error {
	// no_timer_check: under heavy host load an emulated VM can fail the
	// kernel's IO-APIC timer check and panic; real hardware does not need it.
	cmdline := "console=tty0 console=ttyS0,115200 panic=10 no_timer_check"
	if opts.Cmdline != "" {
		cmdline += " " + opts.Cmdline
	}
	grubCfg := fmt.Sprintf(`# kiln lab test OS
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry "kiln lab test OS" {
	echo "kiln-lab: GRUB loading the kernel"
	linux /boot/vmlinuz %s
	initrd /boot/initrd.img
}
`, cmdline)
	files := map[string][]byte{
		"boot/grub/grub.cfg": []byte(grubCfg),
		"etc/kiln/README":    []byte("kiln lab test OS. " + EnvPath + " (KILN_URL=, KILN_IP=, KILN_GATEWAY=, KILN_DNS=) is read at boot; see docs/lab.md.\n"),
	}
	if opts.KilnURL != "" {
		files[EnvPath] = []byte("KILN_URL=" + opts.KilnURL + "\n")
	}
	for p, b := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/kiln"), 0o755); err != nil {
		return err
	}
	k, err := os.ReadFile(opts.Kernel)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "boot/vmlinuz"), k, 0o644); err != nil {
		return err
	}
	// Fixed times make the file system independent of the build time.
	fixed := time.Unix(1700000000, 0)
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, fixed, fixed)
	})
}

// grubImage builds a GRUB core image whose embedded configuration finds the
// root file system by label and hands over to normal mode, which reads
// /boot/grub/grub.cfg there.
func grubImage(ctx context.Context, opts Options, work, format, out string, extra ...string) error {
	early := filepath.Join(work, "early-"+format+".cfg")
	cfg := "search --no-floppy --label " + RootLabel + " --set=root\nset prefix=($root)/boot/grub\n"
	if err := os.WriteFile(early, []byte(cfg), 0o644); err != nil {
		return err
	}
	mods := append([]string{"part_gpt", "ext2", "fat", "normal", "linux", "search", "search_label", "configfile", "echo", "test", "serial", "terminal", "sleep"}, extra...)
	args := append([]string{"-d", filepath.Join(opts.GrubDir, format), "-O", format, "-o", out, "-p", "/boot/grub", "-c", early}, mods...)
	return run(ctx, nil, "grub-mkimage", args...)
}

func buildESP(ctx context.Context, opts Options, work, out string, lay layout) error {
	efi := filepath.Join(work, "BOOTX64.EFI")
	if err := grubImage(ctx, opts, work, "x86_64-efi", efi, "efi_gop", "efi_uga"); err != nil {
		return err
	}
	if err := run(ctx, nil, "mkfs.fat", "-C", "-n", "KILNESP", "-i", espVolID, out, fmt.Sprint(lay.espSize/2)); err != nil {
		return err
	}
	env := []string{"MTOOLS_SKIP_CHECK=1"}
	if err := run(ctx, env, "mmd", "-i", out, "::/EFI", "::/EFI/BOOT"); err != nil {
		return err
	}
	return run(ctx, env, "mcopy", "-i", out, "-m", efi, "::/EFI/BOOT/BOOTX64.EFI")
}

// GPT partition type GUIDs.
const (
	typeESP      = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	typeLinux    = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	typeBIOSBoot = "21686148-6449-6E6F-744E-656564454649"
)

// Offsets in GRUB's boot.img and in the first sector of core.img (diskboot).
const (
	bootKernelSector = 0x5c  // LBA of core.img's first sector (8 bytes)
	bootDriveCheck   = 0x66  // a jump grub-bios-setup turns into NOPs for hard disks
	bootCodeEnd      = 0x1b8 // boot code ends where the disk signature starts
	blocklistStart   = 0x1f4 // diskboot: LBA of the rest of core.img (8 bytes)
	blocklistLen     = 0x1fc // diskboot: its length in sectors (2 bytes)
)

func assemble(ctx context.Context, opts Options, out string, lay layout, esp, root, core string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(lay.total * sector); err != nil {
		return err
	}
	table := fmt.Sprintf("label: gpt\nlabel-id: %s\nunit: sectors\nfirst-lba: 2048\n"+
		"start=%d, size=%d, type=%s, name=\"EFI system\", uuid=6B696C6E-0000-4000-8000-0000000000E1\n"+
		"start=%d, size=%d, type=%s, name=\"kilnroot\", uuid=6B696C6E-0000-4000-8000-0000000000E2\n"+
		"start=%d, size=%d, type=%s, name=\"BIOS boot\", uuid=6B696C6E-0000-4000-8000-0000000000E3\n",
		diskGUID, lay.espStart, lay.espSize, typeESP, lay.rootStart, lay.rootSize, typeLinux, lay.biosStart, lay.biosSize, typeBIOSBoot)
	cmd := exec.CommandContext(ctx, "sfdisk", "--no-reread", "--no-tell-kernel", "-q", out)
	cmd.Stdin = strings.NewReader(table)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sfdisk: %w: %s", err, bytes.TrimSpace(b))
	}
	for _, p := range []struct {
		src   string
		start int64
		max   int64
	}{{esp, lay.espStart, lay.espSize}, {root, lay.rootStart, lay.rootSize}} {
		b, err := os.ReadFile(p.src)
		if err != nil {
			return err
		}
		if int64(len(b)) > p.max*sector {
			return fmt.Errorf("%s is larger than its partition", filepath.Base(p.src))
		}
		if _, err := f.WriteAt(b, p.start*sector); err != nil {
			return err
		}
	}
	coreB, err := os.ReadFile(core)
	if err != nil {
		return err
	}
	nsec := (int64(len(coreB)) + sector - 1) / sector
	if nsec > lay.biosSize || nsec > 0xffff {
		return fmt.Errorf("GRUB core image (%d sectors) does not fit the BIOS boot partition", nsec)
	}
	coreB = append(coreB, make([]byte, nsec*sector-int64(len(coreB)))...)
	binary.LittleEndian.PutUint64(coreB[blocklistStart:], uint64(lay.biosStart+1))
	binary.LittleEndian.PutUint16(coreB[blocklistLen:], uint16(nsec-1))
	if _, err := f.WriteAt(coreB, lay.biosStart*sector); err != nil {
		return err
	}
	bootImg, err := os.ReadFile(filepath.Join(opts.GrubDir, "i386-pc", "boot.img"))
	if err != nil {
		return err
	}
	if len(bootImg) != sector {
		return fmt.Errorf("GRUB boot.img is %d bytes, not 512", len(bootImg))
	}
	mbr := make([]byte, sector)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		return err
	}
	// Boot code from boot.img; the protective partition table from sfdisk.
	copy(mbr[:bootCodeEnd], bootImg[:bootCodeEnd])
	binary.LittleEndian.PutUint64(mbr[bootKernelSector:], uint64(lay.biosStart))
	mbr[bootDriveCheck], mbr[bootDriveCheck+1] = 0x90, 0x90
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	return f.Sync()
}

func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(b))
	}
	return nil
}
