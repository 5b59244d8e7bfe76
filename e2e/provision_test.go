//go:build e2e

package e2e

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/pkg/bmc"
	"github.com/kiln-dev/kiln/pkg/hardware"
	"github.com/kiln-dev/kiln/pkg/hook"
	"github.com/kiln-dev/kiln/pkg/kmod"
	"github.com/kiln-dev/kiln/pkg/lab"
	"github.com/kiln-dev/kiln/pkg/lab/image"
	"github.com/kiln-dev/kiln/pkg/lab/phonehome"
	"github.com/kiln-dev/kiln/pkg/netboot"
	"github.com/kiln-dev/kiln/pkg/netns"
	"github.com/kiln-dev/kiln/pkg/qemu"
	"github.com/kiln-dev/kiln/pkg/workerapi"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
	"github.com/kiln-dev/kiln/templates"
)

// TestProvisionLab is the lab's end-to-end proof: three QEMU machines (BIOS,
// UEFI, BIOS) behind virtual Redfish BMCs; kiln's netboot stack and workflow
// server on the lab network; each machine is set to PXE-boot and powered on
// through its BMC with bmclib; DHCP → iPXE → in-memory OS (kiln's agent) →
// workflow (image2disk, writefile, reboot) → the machine boots its disk and
// phones home with its hostname and IP. The third machine's image URL 404s:
// its workflow must end FAILED with the HTTP status in the reason, as
// `kiln workflows show` prints it.
func TestProvisionLab(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	ctx := testContext(t, 16*time.Minute)
	work := t.TempDir()
	logf, err := os.Create(filepath.Join(work, "kiln.log"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("kiln log (tail):\n%s", b)
		}
	})

	// Artifacts: the in-memory OS and the lab image.
	// kiln-agent is the in-memory OS's /init; the full kiln runs `workflows show`.
	kiln, agent := buildCommand(t, ctx, work, "kiln"), buildCommand(t, ctx, work, "kiln-agent")
	hookDir, imageDir := filepath.Join(work, "hook"), filepath.Join(work, "images")
	hres, err := hook.Build(ctx, hook.Options{Init: agent, OutputDir: hookDir, SkipMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(work, "lab.raw")
	if _, err := image.Build(ctx, image.Options{Output: raw}); err != nil {
		t.Fatal(err)
	}
	gzipFile(t, raw, filepath.Join(imageDir, "lab.raw.gz"))

	// The lab, with kiln's side in its own namespace.
	admin := netns.ForTest(t, "kn5a")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	labDir := filepath.Join(work, "lab")
	l, err := lab.Up(ctx, lab.Options{Dir: labDir, Prefix: "kn5" + hex.EncodeToString(b), Machines: 3,
		Firmware: []qemu.Firmware{qemu.BIOS, qemu.UEFI, qemu.BIOS}, MemoryMiB: 1024, DiskGiB: 1,
		Subnet: "10.251.6.0/24", AdminNetns: admin, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.Close(c); err != nil {
			t.Errorf("lab close: %v", err)
		}
		if _, err := lab.Down(c, labDir); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if t.Failed() {
			for _, m := range l.State.Machines {
				var sb strings.Builder
				_ = lab.Console(labDir, m.Name, &sb)
				s := sb.String()
				if len(s) > 6000 {
					s = s[len(s)-6000:]
				}
				t.Logf("console of %s (tail):\n%s", m.Name, s)
			}
		}
	})
	inv, err := hardware.ReadFile(l.State.HardwareCSV)
	if err != nil {
		t.Fatal(err)
	}
	adminIP := l.State.AdminIP
	kilnURL := "http://" + net.JoinHostPort(adminIP, fmt.Sprint(netboot.DefaultHTTPPort))

	// Workflows: the lab template for the first two, a missing image for the third.
	st, err := store.OpenBolt(filepath.Join(work, "workflows.db"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tpl, err := templates.FS.ReadFile("workflows/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good := &hardware.Inventory{Path: inv.Path, Machines: inv.Machines[:2]}
	bad := &hardware.Inventory{Path: inv.Path, Machines: inv.Machines[2:]}
	now := time.Now()
	wfs, err := workflow.ForInventory(good, "lab", tpl, map[string]string{"image_url": kilnURL + "/images/lab.raw.gz", "kiln_url": kilnURL}, workflow.DefaultNamespace, now)
	if err != nil {
		t.Fatal(err)
	}
	wfsBad, err := workflow.ForInventory(bad, "lab", tpl, map[string]string{"image_url": kilnURL + "/images/missing.raw.gz", "kiln_url": kilnURL}, workflow.DefaultNamespace, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Ensure(ctx, st, append(wfs, wfsBad...)); err != nil {
		t.Fatal(err)
	}

	// kiln's services, listening inside the admin namespace.
	grpcAddr := net.JoinHostPort(adminIP, fmt.Sprint(workerapi.DefaultPort))
	var grpcLn net.Listener
	var nb *netboot.Server
	if err := admin.Do(func() error {
		var err error
		if grpcLn, err = net.Listen("tcp", grpcAddr); err != nil {
			return err
		}
		nb, err = netboot.Start(ctx, netboot.Config{
			BindIP: net.ParseIP(adminIP), Interface: l.State.AdminLink, Machines: inv,
			HookDir: hookDir, ImageDir: imageDir, GRPCAuthority: grpcAddr,
			ExtraKernelArgs: []string{"kiln_modules=" + labModules(t, hres), "no_timer_check"},
			Mounts:          []netboot.Mount{{Prefix: phonehome.Path, Handler: l.PhoneHome}},
			Log:             log,
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer nb.Shutdown()
	wsrv := workerapi.New(st, workerapi.Options{Logger: log})
	go func() { _ = wsrv.Serve(ctx, grpcLn) }()

	// Power every machine on through its BMC with a one-time PXE boot.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := admin.Do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	poweredOn := map[string]time.Time{}
	bmcs := make([]*bmc.Client, len(inv.Machines))
	for i, m := range inv.Machines {
		cfg := bmc.FromMachine(m)
		cfg.Protocols, cfg.Dial, cfg.Timeout = []string{bmc.ProtocolRedfish}, dial, time.Minute
		c, err := bmc.New(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		bmcs[i] = c
		if err := c.SetNextBoot(ctx, bmc.BootPXE, bmc.BootOptions{EFI: l.State.Machines[i].Firmware == qemu.UEFI}); err != nil {
			t.Fatal(err)
		}
		if err := c.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		poweredOn[m.Hostname] = time.Now()
	}

	// Wait for the outcomes in parallel.
	var wg sync.WaitGroup
	rows := make([]timingRow, len(inv.Machines))
	for i, m := range inv.Machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i < 2 {
				rep, err := waitPhoneHome(ctx, t, l.PhoneHome, st, m, bmcs[i])
				if err != nil {
					t.Errorf("%s never phoned home: %v", m.Hostname, err)
					return
				}
				if rep.Hostname != m.Hostname || rep.IP != m.IPAddress {
					t.Errorf("%s phoned home as %q from %s; want hostname %q and ip %s", m.Hostname, rep.Hostname, rep.IP, m.Hostname, m.IPAddress)
				}
				if rep.RemoteIP != m.IPAddress {
					t.Errorf("%s's phone-home came from %s, not %s", m.Hostname, rep.RemoteIP, m.IPAddress)
				}
				rows[i] = timings(ctx, st, nb, m, l.State.Machines[i].Firmware, poweredOn[m.Hostname], rep.ReceivedAt)
				return
			}
			w := waitWorkflow(t, ctx, st, m.Hostname, func(w *workflow.Workflow) bool { return w.State.Terminal() })
			if w.State != workflow.StateFailed || !strings.Contains(w.Reason, "404") {
				t.Errorf("workflow of %s with a missing image ended %s (%q); want FAILED naming HTTP 404", m.Hostname, w.State, w.Reason)
			}
			out, err := admin.Output(ctx, kiln, "workflows", "show", m.Hostname, "--server", grpcAddr)
			if err != nil || !strings.Contains(string(out), "404") || !strings.Contains(string(out), "FAILED") {
				t.Errorf("kiln workflows show %s: %v\n%s", m.Hostname, err, out)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	table := renderTimings(rows[:2], hres)
	t.Log("\n" + table)
	if err := writePerformance(filepath.Join(repoRoot(t), "docs", "performance.md"), table); err != nil {
		t.Errorf("docs/performance.md: %v", err)
	}
}

// labModules is the kiln_modules argument for the lab's VMs: only the
// drivers they need (the in-memory OS carries many more), dependencies
// first, so the agent starts sooner under emulation.
func labModules(t *testing.T, h *hook.Result) string {
	t.Helper()
	ix, err := kmod.Load(filepath.Join("/lib/modules", h.KernelVersion))
	if err != nil {
		t.Fatal(err)
	}
	paths, err := ix.Resolve("virtio_pci", "virtio_rng", "virtio_net", "virtio_blk", "crc32c_generic", "ext4")
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = kmod.Name(p)
	}
	return strings.Join(names, ",")
}

func gzipFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestSpeed)
	if _, err := io.Copy(zw, in); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// firstBootGrace is how long after its workflow succeeded a machine has
// to phone home before it is power-cycled: its first boot from disk
// takes 35–40 s here (docs/performance.md), up to about a minute and a
// half under load.
const firstBootGrace = 3 * time.Minute

// waitPhoneHome waits for m's phone-home. A machine whose workflow
// succeeded (its last action reboots it) but which has not phoned home
// firstBootGrace later is power-cycled once through its BMC, as an
// operator would do: under TCG the in-memory OS's kernel has been seen to
// lock up in virtio_net's transmit path just before the reboot (a soft
// lockup in free_old_xmit_skbs, the VM spinning at 100% CPU for good).
func waitPhoneHome(ctx context.Context, t *testing.T, ph *phonehome.Store, st store.Store, m hardware.Machine, b *bmc.Client) (phonehome.Report, error) {
	match := func(r phonehome.Report) bool { return r.MAC == m.MAC }
	w := waitWorkflow(t, ctx, st, m.Hostname, func(w *workflow.Workflow) bool { return w.State.Terminal() })
	if w.State != workflow.StateSuccess {
		return phonehome.Report{}, fmt.Errorf("workflow ended %s (%q)", w.State, w.Reason)
	}
	gctx, cancel := context.WithTimeout(ctx, firstBootGrace)
	rep, err := ph.Wait(gctx, match)
	cancel()
	if err == nil || ctx.Err() != nil {
		return rep, err
	}
	t.Logf("%s: no phone-home %s after its workflow succeeded; power-cycling it through its BMC", m.Hostname, firstBootGrace)
	if err := b.PowerCycle(ctx); err != nil {
		return phonehome.Report{}, fmt.Errorf("power-cycling after no phone-home: %w", err)
	}
	return ph.Wait(ctx, match)
}

func waitWorkflow(t *testing.T, ctx context.Context, st store.Store, name string, done func(*workflow.Workflow) bool) *workflow.Workflow {
	for {
		w, err := st.Get(ctx, workerapi.QualifiedID(name))
		if err == nil && done(w) {
			return w
		}
		select {
		case <-ctx.Done():
			if w != nil {
				t.Errorf("workflow %s: still %s (%s) at the deadline", name, w.State, w.Reason)
			} else {
				t.Errorf("workflow %s: %v", name, err)
			}
			return &workflow.Workflow{}
		case <-time.After(time.Second):
		}
	}
}

// timingRow is one machine's provisioning phases, each measured from the
// end of the previous one.
type timingRow struct {
	name, firmware                              string
	dhcp, script, osBoot, imageWrite, firstBoot time.Duration
	total                                       time.Duration
}

// timings derives the phases from kiln's netboot journal, the workflow's
// action times and the phone-home: power on → first DHCP reply (firmware
// start, PXE DHCP) → iPXE script served → first action started (kernel and
// initramfs download, OS boot, agent up) → image written → phone-home
// (writefile, reboot, boot from disk).
func timings(ctx context.Context, st store.Store, nb *netboot.Server, m hardware.Machine, fw qemu.Firmware, on, home time.Time) timingRow {
	r := timingRow{name: m.Hostname, firmware: strings.ToUpper(string(fw)), total: home.Sub(on)}
	var dhcpAt, scriptAt time.Time
	for _, e := range nb.Journal.Events(m.MAC) {
		if dhcpAt.IsZero() && strings.HasPrefix(e.Event, "dhcp") {
			dhcpAt = e.Time
		}
		if scriptAt.IsZero() && e.Event == "script" {
			scriptAt = e.Time
		}
	}
	w, err := st.Get(ctx, workerapi.QualifiedID(m.Hostname))
	if err != nil || len(w.Tasks) == 0 || len(w.Tasks[0].Actions) < 2 {
		return r
	}
	acts := w.Tasks[0].Actions
	if !dhcpAt.IsZero() {
		r.dhcp = dhcpAt.Sub(on)
	}
	if !scriptAt.IsZero() && !dhcpAt.IsZero() {
		r.script = scriptAt.Sub(dhcpAt)
	}
	if !scriptAt.IsZero() {
		r.osBoot = acts[0].StartedAt.Sub(scriptAt)
	}
	r.imageWrite = acts[0].FinishedAt.Sub(acts[0].StartedAt)
	r.firstBoot = home.Sub(acts[0].FinishedAt)
	return r
}

func renderTimings(rows []timingRow, h *hook.Result) string {
	sort.Slice(rows, func(i, j int) bool { return rows[i].name < rows[j].name })
	var b strings.Builder
	fmt.Fprintf(&b, "| machine | firmware | DHCP | iPXE script | OS boot | image write | first boot | total |\n|---|---|---|---|---|---|---|---|\n")
	s := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.firmware, s(r.dhcp), s(r.script), s(r.osBoot), s(r.imageWrite), s(r.firstBoot), s(r.total))
	}
	fmt.Fprintf(&b, "\nIn-memory OS: kernel %s (%.1f MiB), initramfs %.1f MiB gzip (%.1f MiB unpacked, %d modules). Lab image: 64 MiB raw, gzip-compressed for the transfer.\n",
		h.KernelVersion, float64(h.KernelBytes)/(1<<20), float64(h.InitramfsBytes)/(1<<20), float64(h.UncompressedBytes)/(1<<20), len(h.Modules))
	return b.String()
}

const perfStart, perfEnd = "<!-- lab-e2e:start -->", "<!-- lab-e2e:end -->"

// writePerformance replaces the lab section of docs/performance.md.
func writePerformance(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := perfStart + "\n## Lab end-to-end provisioning (make e2e)\n\n" +
		"Measured by e2e/provision_test.go on " + time.Now().UTC().Format("2006-01-02") + " (QEMU TCG, 1 GiB per VM, all three VMs at once on the shared 2-core machine). " +
		"Phases, each from the end of the previous one: DHCP = power-on via the BMC to kiln's first DHCP reply (firmware start and PXE); " +
		"iPXE script = to the script being served (iPXE load over TFTP, its DHCP); OS boot = to the agent starting the first action " +
		"(kernel + initramfs download, boot, agent DHCP and connect); image write = image2disk; first boot = writefile, reboot, " +
		"GRUB, the test OS's boot, DHCP, metadata and the phone-home.\n\n" + table + perfEnd + "\n"
	s := string(b)
	if i, j := strings.Index(s, perfStart), strings.Index(s, perfEnd); i >= 0 && j > i {
		s = s[:i] + section + s[j+len(perfEnd)+1:]
	} else {
		if s == "" {
			s = "# Performance\n"
		}
		s += "\n" + section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
