// Package lab builds a rack in a box: an isolated network (a network
// namespace with a bridge, joined to kiln's side by a veth pair), N QEMU
// machines with disks and MACs on taps on that bridge, and one virtual BMC
// per machine (Redfish, or IPMI over RMCP+), served by kiln, that powers the
// machine and sets its boot device. It writes the lab's Hardware.csv and a matching ClusterSpec.yml and
// records its state so that `kiln lab status|console|down` work from other
// processes and `down` can remove everything even after a crash.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/ipmi"
	"github.com/kiln-dev/kiln/pkg/lab/phonehome"
	"github.com/kiln-dev/kiln/pkg/lab/redfish"
	"github.com/kiln-dev/kiln/pkg/lab/vmpower"
	"github.com/kiln-dev/kiln/pkg/netns"
	"github.com/kiln-dev/kiln/pkg/qemu"
)

// Defaults.
const (
	DefaultPrefix   = "kilnlab"
	DefaultSubnet   = "10.251.0.0/24"
	DefaultMemory   = 1024
	DefaultDiskGiB  = 2
	StateFile       = "lab.json"
	HardwareFile    = "Hardware.csv"
	ClusterSpecFile = "ClusterSpec.yml"
	PhoneHomeFile   = "phonehome.jsonl"
	BMCUser         = "admin"
	// BMCRedfish and BMCIPMI are the kinds of virtual BMC a lab serves.
	BMCRedfish   = "redfish"
	BMCIPMI      = "ipmi"
	maxPrefixLen = 9 // leaves room for the longest suffix ("br", "t99")
)

// Options describe a lab.
type Options struct {
	// Dir holds the lab's state, disks, consoles and generated files.
	Dir string
	// Prefix names the namespace, bridge, veth and taps; at most 9 characters.
	Prefix string
	// Machines is the number of VMs.
	Machines int
	// Firmware per machine, cycled when shorter than Machines; default BIOS.
	Firmware []qemu.Firmware
	// MemoryMiB per VM (default 1024) and DiskGiB per disk (default 2).
	MemoryMiB, DiskGiB int
	// KVM asks for hardware acceleration instead of TCG.
	KVM bool
	// Subnet is the lab network; kiln's side is .1, machines .11+, BMCs .101+.
	Subnet string
	// AdminNetns holds kiln's side of the network (the veth end with the
	// admin and BMC addresses); nil is the namespace kiln runs in.
	AdminNetns *netns.Namespace
	// BMC is the kind of virtual BMC per machine: BMCRedfish (default,
	// HTTPS on port 443) or BMCIPMI (IPMI v2.0 RMCP+ on UDP port 623).
	BMC string
	// BMCPassword for every virtual BMC; generated when empty. IPMI limits
	// it to 20 bytes.
	BMCPassword string
	// ClusterName for the generated ClusterSpec.yml; default "lab".
	ClusterName string
	// SSHPublicKeyFile is the key put into ClusterSpec.yml; empty: a key
	// pair is generated into Dir (id_ed25519, id_ed25519.pub).
	SSHPublicKeyFile string
	Log              *slog.Logger
}

// Machine is one lab VM as recorded in the state file.
type Machine struct {
	Name     string        `json:"name"`
	MAC      string        `json:"mac"`
	IP       string        `json:"ip"`
	BMCIP    string        `json:"bmcIP"`
	Firmware qemu.Firmware `json:"firmware"`
	Disk     string        `json:"disk"`
	Tap      string        `json:"tap"`
	Console  string        `json:"console"`
	PIDFile  string        `json:"pidFile"`
}

// State is what lab.json records.
type State struct {
	Prefix     string    `json:"prefix"`
	Netns      string    `json:"netns"`
	AdminNetns string    `json:"adminNetns,omitempty"`
	Bridge     string    `json:"bridge"`
	AdminLink  string    `json:"adminLink"`
	LabLink    string    `json:"labLink"`
	Subnet     string    `json:"subnet"`
	AdminIP    string    `json:"adminIP"`
	Gateway    string    `json:"gateway"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	BMCUser    string    `json:"bmcUser"`
	// BMC is the kind of the virtual BMCs; empty in older state files
	// means BMCRedfish.
	BMC         string    `json:"bmc,omitempty"`
	Machines    []Machine `json:"machines"`
	HardwareCSV string    `json:"hardwareCSV"`
	ClusterSpec string    `json:"clusterSpec"`
	PhoneHome   string    `json:"phoneHome"`
}

// Lab is a running lab.
type Lab struct {
	State State
	Dir   string
	// PhoneHome records the machines' phone-homes; mount it on kiln's HTTP
	// server at phonehome.Path.
	PhoneHome *phonehome.Store
	// VMs are the machines' power controllers, by name.
	VMs map[string]*vmpower.Machine

	opts    Options
	log     *slog.Logger
	ns      *netns.Namespace
	bmcs    []io.Closer
	cancel  context.CancelFunc
	closeMu sync.Mutex
	closed  bool
}

func (o *Options) defaults() error {
	if o.Dir == "" {
		return errors.New("lab: no state directory given")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if len(o.Prefix) > maxPrefixLen {
		return fmt.Errorf("lab prefix %q is longer than %d characters (network device names are limited to 15)", o.Prefix, maxPrefixLen)
	}
	if err := netns.CheckName(o.Prefix); err != nil {
		return fmt.Errorf("lab prefix: %w", err)
	}
	if o.Machines < 1 || o.Machines > 89 {
		return fmt.Errorf("lab: --machines %d must be between 1 and 89", o.Machines)
	}
	if o.KVM {
		if _, err := os.Stat("/dev/kvm"); err != nil {
			return fmt.Errorf("lab: --kvm asked for, but KVM is not available here (%v); leave --kvm out to use software emulation", err)
		}
	}
	if len(o.Firmware) == 0 {
		o.Firmware = []qemu.Firmware{qemu.BIOS}
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = DefaultMemory
	}
	if o.DiskGiB == 0 {
		o.DiskGiB = DefaultDiskGiB
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet
	}
	switch o.BMC {
	case "":
		o.BMC = BMCRedfish
	case BMCRedfish, BMCIPMI:
	default:
		return fmt.Errorf("lab BMC kind %q: use %q or %q", o.BMC, BMCRedfish, BMCIPMI)
	}
	if o.BMC == BMCIPMI && len(o.BMCPassword) > ipmi.MaxPasswordLen {
		return fmt.Errorf("lab BMC password: IPMI allows at most %d bytes", ipmi.MaxPasswordLen)
	}
	if o.ClusterName == "" {
		o.ClusterName = "lab"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// hostIP returns the n-th address of a /24 (or larger) IPv4 subnet.
func hostIP(subnet *net.IPNet, n int) string {
	ip := make(net.IP, 4)
	copy(ip, subnet.IP.To4())
	ip[3] += byte(n)
	return ip.String()
}

// Up creates the lab. Machines start powered off; power them on through
// their BMCs (or VMs). Close tears everything down.
func Up(ctx context.Context, opts Options) (_ *Lab, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if err := netns.Available(); err != nil {
		return nil, fmt.Errorf("kiln lab: %w", err)
	}
	_, subnet, err := net.ParseCIDR(opts.Subnet)
	if err != nil || subnet.IP.To4() == nil {
		return nil, fmt.Errorf("lab subnet %q is not an IPv4 CIDR", opts.Subnet)
	}
	if ones, _ := subnet.Mask.Size(); ones > 24 {
		return nil, fmt.Errorf("lab subnet %s is smaller than a /24", opts.Subnet)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab directory: %w", err)
	}
	if st, err := ReadState(dir); err == nil && processAlive(st.PID) {
		return nil, fmt.Errorf("a lab is already running from %s (pid %d); run `kiln lab down --dir %s` first", dir, st.PID, dir)
	}
	if opts.BMCPassword == "" {
		// Hex of half IPMI's password limit: the limit in characters.
		b := make([]byte, ipmi.MaxPasswordLen/2)
		_, _ = rand.Read(b)
		opts.BMCPassword = hex.EncodeToString(b)
	}
	ones, _ := subnet.Mask.Size()
	p := opts.Prefix
	st := State{
		Prefix: p, Netns: p, Bridge: p + "br", AdminLink: p + "h", LabLink: p + "n",
		Subnet: opts.Subnet, AdminIP: hostIP(subnet, 1), Gateway: hostIP(subnet, 1),
		PID: os.Getpid(), Started: time.Now().UTC(), BMCUser: BMCUser, BMC: opts.BMC,
		HardwareCSV: filepath.Join(dir, HardwareFile), ClusterSpec: filepath.Join(dir, ClusterSpecFile),
		PhoneHome: filepath.Join(dir, PhoneHomeFile),
	}
	if opts.AdminNetns != nil {
		st.AdminNetns = opts.AdminNetns.Name
	}
	for i := 0; i < opts.Machines; i++ {
		name := fmt.Sprintf("%s-%02d", opts.ClusterName, i+1)
		st.Machines = append(st.Machines, Machine{
			Name:     name,
			MAC:      fmt.Sprintf("52:54:00:%02x:%02x:%02x", len(p)&0xff, subnet.IP.To4()[2], 11+i),
			IP:       hostIP(subnet, 11+i),
			BMCIP:    hostIP(subnet, 101+i),
			Firmware: opts.Firmware[i%len(opts.Firmware)],
			Disk:     filepath.Join(dir, name+".raw"),
			Tap:      fmt.Sprintf("%st%d", p, i),
			Console:  filepath.Join(dir, name+"-console.log"),
			PIDFile:  filepath.Join(dir, name+".pid"),
		})
	}
	log := opts.Log.With("lab", p)
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &Lab{State: st, Dir: dir, opts: opts, log: log, cancel: cancel, VMs: map[string]*vmpower.Machine{}}
	defer func() {
		if err != nil {
			_ = l.Close(context.WithoutCancel(ctx))
		}
	}()
	// Record the state first so that `kiln lab down` can clean up a
	// half-built lab.
	if err := l.writeState(); err != nil {
		return nil, err
	}

	// Network: <prefix> namespace with bridge <prefix>br and the taps;
	// veth <prefix>h (kiln's side) ↔ <prefix>n (on the bridge).
	if l.ns, err = netns.Create(ctx, st.Netns); err != nil {
		return nil, fmt.Errorf("lab network: %w (a previous lab may be left over: kiln lab down --dir %s)", err, dir)
	}
	if err := netns.AddBridge(ctx, l.ns, st.Bridge); err != nil {
		return nil, fmt.Errorf("lab network: %w", err)
	}
	if err := netns.AddVeth(ctx, st.AdminLink, opts.AdminNetns, st.LabLink, l.ns); err != nil {
		return nil, fmt.Errorf("lab network: %w", err)
	}
	if err := netns.SetMaster(ctx, l.ns, st.LabLink, st.Bridge); err != nil {
		return nil, fmt.Errorf("lab network: %w", err)
	}
	if err := netns.AddAddr(ctx, opts.AdminNetns, st.AdminLink, fmt.Sprintf("%s/%d", st.AdminIP, ones)); err != nil {
		return nil, fmt.Errorf("lab network: %w", err)
	}
	for _, m := range st.Machines {
		if err := netns.AddAddr(ctx, opts.AdminNetns, st.AdminLink, fmt.Sprintf("%s/%d", m.BMCIP, ones)); err != nil {
			return nil, fmt.Errorf("lab network: BMC address: %w", err)
		}
		if err := netns.AddTap(ctx, l.ns, m.Tap, st.Bridge); err != nil {
			return nil, fmt.Errorf("lab network: %w", err)
		}
	}

	if l.PhoneHome, err = phonehome.NewStore(st.PhoneHome, log); err != nil {
		return nil, err
	}
	for _, m := range st.Machines {
		if err := createDisk(m.Disk, int64(opts.DiskGiB)<<30); err != nil {
			return nil, err
		}
		vm := vmpower.New(life, m.Name, m.Firmware == qemu.UEFI, &launcher{
			prefix: p, machine: m, netns: st.Netns, memory: opts.MemoryMiB, kvm: opts.KVM, dir: dir, log: log,
		}, log)
		l.VMs[m.Name] = vm
		if err := l.serveBMC(m, vm); err != nil {
			return nil, err
		}
	}
	if err := writeHardwareCSV(st, opts.BMCPassword); err != nil {
		return nil, err
	}
	key, err := sshKey(dir, opts.SSHPublicKeyFile)
	if err != nil {
		return nil, err
	}
	if err := writeClusterSpec(st, opts.ClusterName, key); err != nil {
		return nil, err
	}
	log.Info("lab up", "machines", len(st.Machines), "dir", dir)
	return l, nil
}

// serveBMC starts m's virtual BMC on its BMC address in the admin
// namespace: Redfish on TCP port 443 or IPMI on UDP port 623.
func (l *Lab) serveBMC(m Machine, vm *vmpower.Machine) error {
	if l.opts.BMC == BMCIPMI {
		var conn net.PacketConn
		err := l.inAdminNetns(func() error {
			var err error
			conn, err = net.ListenPacket("udp", net.JoinHostPort(m.BMCIP, "623"))
			return err
		})
		if err != nil {
			return fmt.Errorf("virtual IPMI BMC of %s: %w", m.Name, err)
		}
		srv, err := ipmi.Serve(conn, ipmi.Config{Name: m.Name, Username: l.State.BMCUser, Password: l.opts.BMCPassword, System: vm, Log: l.log})
		if err != nil {
			conn.Close()
			return err
		}
		l.bmcs = append(l.bmcs, srv)
		return nil
	}
	h, err := redfish.NewHandler(redfish.Config{Name: m.Name, MAC: m.MAC, Username: l.State.BMCUser, Password: l.opts.BMCPassword, System: vm, Log: l.log})
	if err != nil {
		return err
	}
	var ln net.Listener
	err = l.inAdminNetns(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(m.BMCIP, "443"))
		return err
	})
	if err != nil {
		return fmt.Errorf("virtual BMC of %s: %w", m.Name, err)
	}
	srv, err := redfish.Serve(ln, h)
	if err != nil {
		ln.Close()
		return err
	}
	l.bmcs = append(l.bmcs, srv)
	return nil
}

// inAdminNetns runs fn in the admin namespace (kiln's own when none is set).
func (l *Lab) inAdminNetns(fn func() error) error {
	if l.opts.AdminNetns != nil {
		return l.opts.AdminNetns.Do(fn)
	}
	return fn()
}

// BMCPassword is the password of every virtual BMC (also in Hardware.csv).
func (l *Lab) BMCPassword() string { return l.opts.BMCPassword }

func createDisk(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("lab disk: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (l *Lab) writeState() error {
	b, err := json.MarshalIndent(l.State, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("lab state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(l.Dir, StateFile))
}

// ReadState reads dir/lab.json.
func ReadState(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return st, fmt.Errorf("no lab in %s (start one with kiln lab up --dir %s): %w", dir, dir, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	return st, nil
}

// Close powers every VM off, stops the BMCs and removes the network. It is
// safe to call more than once.
func (l *Lab) Close(ctx context.Context) error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	for name, vm := range l.VMs {
		if err := vm.PowerOff(ctx); err != nil {
			errs = append(errs, fmt.Errorf("power off %s: %w", name, err))
		}
	}
	l.cancel()
	for _, s := range l.bmcs {
		_ = s.Close()
	}
	errs = append(errs, Teardown(ctx, l.State))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.log.Info("lab down")
	return nil
}

// Machines returns the lab's machines in order.
func (l *Lab) Machines() []Machine { return append([]Machine(nil), l.State.Machines...) }

// String describes a machine for messages.
func (m Machine) String() string {
	return fmt.Sprintf("%s (%s, %s, %s)", m.Name, m.MAC, m.IP, strings.ToUpper(string(m.Firmware)))
}
