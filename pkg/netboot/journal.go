package netboot

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Event is one step a machine took while netbooting.
type Event struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"`
}

// Journal keeps the last events of every machine that talked to kiln, so
// an operator (and the lab) can see how far each machine got.
type Journal struct {
	mu     sync.Mutex
	max    int
	events map[string][]Event
	notify chan struct{}
}

// NewJournal keeps up to perMachine events per MAC.
func NewJournal(perMachine int) *Journal {
	return &Journal{max: perMachine, events: map[string][]Event{}, notify: make(chan struct{})}
}

// Record implements the recorders of the DHCP, TFTP and HTTP services.
func (j *Journal) Record(mac, event string) {
	mac = strings.ToLower(mac)
	j.mu.Lock()
	defer j.mu.Unlock()
	ev := append(j.events[mac], Event{Time: time.Now().UTC(), Event: event})
	if len(ev) > j.max {
		ev = ev[len(ev)-j.max:]
	}
	j.events[mac] = ev
	close(j.notify)
	j.notify = make(chan struct{})
}

// Events returns a copy of mac's events.
func (j *Journal) Events(mac string) []Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Event(nil), j.events[strings.ToLower(mac)]...)
}

// Changed returns a channel closed at the next Record.
func (j *Journal) Changed() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.notify
}

// Has reports whether mac has an event starting with prefix.
func (j *Journal) Has(mac, prefix string) bool {
	for _, e := range j.Events(mac) {
		if strings.HasPrefix(e.Event, prefix) {
			return true
		}
	}
	return false
}

// ServeHTTP serves the journal as JSON: {"<mac>": [{"time","event"}...]}.
func (j *Journal) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	j.mu.Lock()
	macs := make([]string, 0, len(j.events))
	for m := range j.events {
		macs = append(macs, m)
	}
	sort.Strings(macs)
	out := make(map[string][]Event, len(macs))
	for _, m := range macs {
		out[m] = append([]Event(nil), j.events[m]...)
	}
	j.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
