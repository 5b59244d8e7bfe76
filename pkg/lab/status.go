package lab

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/pkg/lab/phonehome"
)

// MachineStatus is one machine in `kiln lab status`.
type MachineStatus struct {
	Machine
	// Power is "on" while the machine's QEMU runs, else "off".
	Power string `json:"power"`
	// Boots is how many times the machine has been started.
	Boots int `json:"boots"`
	// PhoneHome is the machine's latest phone-home, if any.
	PhoneHome *phonehome.Report `json:"phoneHome,omitempty"`
}

// Status is the state of a lab.
type Status struct {
	Dir      string            `json:"dir"`
	Running  bool              `json:"running"`
	PID      int               `json:"pid"`
	Started  time.Time         `json:"started"`
	Subnet   string            `json:"subnet"`
	AdminIP  string            `json:"adminIP"`
	Files    map[string]string `json:"files"`
	Machines []MachineStatus   `json:"machines"`
}

// ReadStatus reports the lab in dir: whether its `kiln lab up` process is
// alive, each machine's power and boot count, and the phone-homes recorded.
func ReadStatus(dir string) (*Status, error) {
	st, err := ReadState(dir)
	if err != nil {
		return nil, err
	}
	s := &Status{Dir: dir, Running: processAlive(st.PID), PID: st.PID, Started: st.Started, Subnet: st.Subnet, AdminIP: st.AdminIP,
		Files: map[string]string{"hardwareCSV": st.HardwareCSV, "clusterSpec": st.ClusterSpec, "phoneHome": st.PhoneHome}}
	reports, err := phonehome.ReadFile(st.PhoneHome)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	latest := phonehome.Latest(reports)
	byMAC := map[string]phonehome.Report{}
	for _, r := range reports {
		if r.MAC != "" {
			byMAC[r.MAC] = r
		}
	}
	for _, m := range st.Machines {
		ms := MachineStatus{Machine: m, Power: "off", Boots: len(ConsoleLogs(dir, m.Name))}
		if pidAlive(m.PIDFile) {
			ms.Power = "on"
		}
		if r, ok := byMAC[m.MAC]; ok {
			ms.PhoneHome = &r
		} else if r, ok := latest[m.Name]; ok {
			ms.PhoneHome = &r
		}
		s.Machines = append(s.Machines, ms)
	}
	return s, nil
}

func pidAlive(pidFile string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && processAlive(pid)
}
