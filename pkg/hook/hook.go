// Package hook builds kiln's in-memory operating system (the role HookOS has
// in Tinkerbell): a Linux kernel plus an initramfs whose /init is the static
// kiln-agent binary (cmd/kiln-agent; a full kiln binary works too), which runs
// kiln's provisioning agent when started as PID 1, together with the kernel modules the agent needs to see disks and NICs.
// The outputs are named vmlinuz-<arch> and initramfs-<arch>, as Hook's are.
package hook

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kiln-dev/kiln/pkg/initramfs"
	"github.com/kiln-dev/kiln/pkg/kmod"
)

// DefaultModules are the drivers the in-memory OS carries by default: virtual
// and common physical NICs, disk controllers, and the file systems the
// workflow actions write.
var DefaultModules = []string{
	// virtio (QEMU, most clouds); virtio_rng feeds the kernel's random
	// number generator in VMs without RDRAND, which DHCP and TLS wait for
	"virtio_pci", "virtio_rng", "virtio_net", "virtio_blk", "virtio_scsi",
	// NICs
	"e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice", "bnxt_en", "tg3", "r8169", "mlx5_core",
	// disks
	"ahci", "ata_piix", "sd_mod", "nvme", "megaraid_sas", "mpt3sas",
	// file systems and partitions
	// ext4 and jbd2 need a crc32c implementation (a soft dependency modules.dep omits)
	"crc32c_generic", "crc32c_intel", "ext4", "xfs", "vfat", "nls_cp437", "nls_ascii", "loop",
}

// ModuleListPath is where the initramfs lists its modules, one path per line
// relative to /lib/modules/<version>, dependencies first.
const ModuleListPath = "etc/kiln/modules"

// Options control a build.
type Options struct {
	// Kernel is the kernel image (bzImage). Empty: the newest /boot/vmlinuz-*.
	Kernel string
	// ModulesDir is the kernel's module tree. Empty: /lib/modules/<version>,
	// with the version read from the kernel image.
	ModulesDir string
	// Init is the static binary that becomes /init: kiln-agent
	// (cmd/kiln-agent), or a full kiln, which runs the same agent as PID 1.
	Init string
	// Modules are the modules to include (with their dependencies); nil
	// means DefaultModules. Names the kernel has neither as module nor
	// built in are an error unless SkipMissing.
	Modules []string
	// SkipMissing drops unknown module names instead of failing; they are
	// reported in Result.MissingModules.
	SkipMissing bool
	// CACerts is a CA bundle copied to /etc/ssl/certs/ca-certificates.crt.
	// Empty: the host's bundle if it exists; "-" for none.
	CACerts string
	// OutputDir receives vmlinuz-<Arch> and initramfs-<Arch>.
	OutputDir string
	// Arch names the outputs; default x86_64.
	Arch string
	// BootDir is where the default kernel is looked for; default /boot.
	BootDir string
}

// Result describes a finished build.
type Result struct {
	Kernel              string   `json:"kernel"`
	Initramfs           string   `json:"initramfs"`
	KernelVersion       string   `json:"kernelVersion"`
	KernelSource        string   `json:"kernelSource"`
	KernelBytes         int64    `json:"kernelBytes"`
	InitramfsBytes      int64    `json:"initramfsBytes"`
	UncompressedBytes   int64    `json:"uncompressedBytes"`
	InitramfsSHA256     string   `json:"initramfsSHA256"`
	Modules             []string `json:"modules"`
	MissingModules      []string `json:"missingModules,omitempty"`
	InitramfsEntryCount int      `json:"initramfsEntries"`
}

// FindKernel returns the newest vmlinuz-* in dir (by version order of the
// file names).
func FindKernel(dir string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	if len(m) == 0 {
		return "", fmt.Errorf("no kernel (vmlinuz-*) in %s; install one (Debian: apt-get install linux-image-amd64) or pass --kernel", dir)
	}
	sort.Slice(m, func(i, j int) bool { return versionLess(m[i], m[j]) })
	return m[len(m)-1], nil
}

// versionLess orders strings comparing digit runs numerically.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// KernelVersion reads the version string from an x86 bzImage's setup header
// (the "HdrS" boot protocol header), e.g. "6.1.0-56-amd64".
func KernelVersion(r io.ReaderAt) (string, error) {
	hdr := make([]byte, 0x210)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return "", fmt.Errorf("read kernel header: %w", err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", errors.New("not an x86 bzImage (no HdrS boot header)")
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	if off == 0x200 {
		return "", errors.New("the kernel image carries no version string")
	}
	buf := make([]byte, 256)
	n, err := r.ReadAt(buf, off)
	if n == 0 {
		return "", fmt.Errorf("read kernel version string: %w", err)
	}
	s := string(buf[:n])
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	v, _, _ := strings.Cut(s, " ")
	if v == "" || strings.ContainsAny(v, "/\\") {
		return "", fmt.Errorf("the kernel's version string %q is not usable", s)
	}
	return v, nil
}

// CheckStatic returns an error unless path is a statically linked ELF
// executable (an /init cannot rely on a dynamic loader in the initramfs).
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0 (make agent) for the in-memory OS", path)
		}
	}
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s is built for %s, not x86_64", path, f.Machine)
	}
	return nil
}

// Build writes the kernel and initramfs into opts.OutputDir.
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.Arch == "" {
		opts.Arch = "x86_64"
	}
	if opts.BootDir == "" {
		opts.BootDir = "/boot"
	}
	if opts.OutputDir == "" {
		return nil, errors.New("no output directory given")
	}
	if opts.Init == "" {
		return nil, errors.New("no agent binary given for /init; build one with make agent (bin/kiln-agent)")
	}
	if err := CheckStatic(opts.Init); err != nil {
		return nil, err
	}
	if opts.Kernel == "" {
		k, err := FindKernel(opts.BootDir)
		if err != nil {
			return nil, err
		}
		opts.Kernel = k
	}
	kf, err := os.Open(opts.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	defer kf.Close()
	kver, err := KernelVersion(kf)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", opts.Kernel, err)
	}
	if opts.ModulesDir == "" {
		opts.ModulesDir = filepath.Join("/lib/modules", kver)
	}
	ix, err := kmod.Load(opts.ModulesDir)
	if err != nil {
		return nil, fmt.Errorf("modules for kernel %s: %w", kver, err)
	}
	names := opts.Modules
	if names == nil {
		names = DefaultModules
	}
	res := &Result{KernelVersion: kver, KernelSource: opts.Kernel}
	var keep []string
	for _, n := range names {
		if _, err := ix.Resolve(n); err != nil {
			if !opts.SkipMissing {
				return nil, err
			}
			res.MissingModules = append(res.MissingModules, n)
			continue
		}
		keep = append(keep, n)
	}
	paths, err := ix.Resolve(keep...)
	if err != nil {
		return nil, err
	}

	a := initramfs.New()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(a.File("init", opts.Init, 0o755))
	add(a.CharDev("dev/console", 0o600, 5, 1))
	add(a.CharDev("dev/null", 0o666, 1, 3))
	for _, d := range []string{"proc", "sys", "run", "mnt", "var/log", "root"} {
		add(a.Dir(d, 0o755))
	}
	add(a.Dir("tmp", 0o1777))
	mdir := "lib/modules/" + kver
	for _, p := range paths {
		add(a.File(mdir+"/"+p, filepath.Join(ix.Dir, p), 0o644))
		res.Modules = append(res.Modules, kmod.Name(p))
	}
	add(a.Bytes(mdir+"/modules.dep", 0o644, []byte(ix.DepLines(paths))))
	if b, err := os.ReadFile(filepath.Join(ix.Dir, "modules.builtin")); err == nil {
		add(a.Bytes(mdir+"/modules.builtin", 0o644, b))
	}
	list := "# Kernel modules of the kiln in-memory OS, load order (dependencies first),\n# relative to /lib/modules/" + kver + ".\n" + strings.Join(paths, "\n") + "\n"
	add(a.Bytes(ModuleListPath, 0o644, []byte(list)))
	add(a.Bytes("etc/os-release", 0o644, []byte("NAME=\"kiln in-memory OS\"\nID=kiln-hook\nVERSION_ID="+kver+"\n")))
	add(a.Bytes("etc/hostname", 0o644, []byte("kiln-hook\n")))
	ca := opts.CACerts
	if ca == "" {
		if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
			ca = "/etc/ssl/certs/ca-certificates.crt"
		}
	}
	if ca != "" && ca != "-" {
		add(a.File("etc/ssl/certs/ca-certificates.crt", ca, 0o644))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if err := os.MkdirAll(opts.OutputDir, 0o755); err != nil {
		return nil, err
	}
	res.Kernel = filepath.Join(opts.OutputDir, "vmlinuz-"+opts.Arch)
	res.Initramfs = filepath.Join(opts.OutputDir, "initramfs-"+opts.Arch)
	if res.KernelBytes, err = copyFile(opts.Kernel, res.Kernel); err != nil {
		return nil, err
	}
	tmp := res.Initramfs + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	err = a.WriteGzip(cw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("write %s: %w", res.Initramfs, err)
	}
	if err := os.Rename(tmp, res.Initramfs); err != nil {
		return nil, err
	}
	res.InitramfsBytes = cw.n
	res.InitramfsSHA256 = hex.EncodeToString(h.Sum(nil))
	res.UncompressedBytes = a.Size()
	res.InitramfsEntryCount = a.Len()
	return res, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return n, os.Rename(tmp, dst)
}
