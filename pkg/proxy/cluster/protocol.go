// Package cluster implements Kong's hybrid mode, sync protocol v1: a
// control plane (CP) that owns the database and pushes the whole
// configuration to data planes (DPs) over a mutually authenticated
// WebSocket (wss://<cp>/v1/outlet), and data planes that apply what they
// receive into their in-memory store, persist it, and keep serving it when
// the control plane is away.
//
// Frames: the DP's first message is a JSON "basic_info" (its plugins and
// labels); the CP answers with gzip-compressed JSON "reconfigure" frames
// carrying the full flat export (config_table), its config_hash
// (pkg/proxy/confighash) and per-section hashes, on connect and after every
// change. The DP pings every 30 s, and right after applying a
// configuration, with its current 32-character hash as the ping payload;
// the CP records each DP from these pings (GET /clustering/data-planes).
package cluster

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/kiln-dev/kiln/pkg/proxy/confighash"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// Protocol constants (kong/constants.lua, kong/templates/kong_defaults.lua).
const (
	// OutletPath is the sync v1 WebSocket endpoint on the cluster listener.
	OutletPath = "/v1/outlet"
	// SharedServerName is the SNI a DP sends in cluster_mtls = shared mode.
	SharedServerName = "kong_clustering"
	// PingInterval is how often a DP pings.
	PingInterval = 30 * time.Second
	// PingWait is how long either side waits for a frame before dropping
	// the link (1.5 × PingInterval).
	PingWait = PingInterval * 3 / 2
	// FrameTimeout bounds sending one frame and the wait for basic_info.
	FrameTimeout = 5 * time.Second
	// MaxPayload is cluster_max_payload: the largest (compressed) frame.
	MaxPayload = 16 << 20
	// MaxInflated bounds a reconfigure frame once decompressed.
	MaxInflated = 256 << 20
	// DefaultPurgeDelay is cluster_data_plane_purge_delay: how long the CP
	// keeps the row of a DP it no longer hears from.
	DefaultPurgeDelay = 14 * 24 * time.Hour
	// DefaultUpdateFrequency is db_update_frequency: the minimum time
	// between two configuration pushes after the first.
	DefaultUpdateFrequency = 5 * time.Second
)

// SyncStatus is a DP row's sync_status.
type SyncStatus string

// The sync statuses Kong records (kong/constants.lua CLUSTERING_SYNC_STATUS).
const (
	StatusUnknown                   SyncStatus = "unknown"
	StatusNormal                    SyncStatus = "normal"
	StatusKongVersionIncompatible   SyncStatus = "kong_version_incompatible"
	StatusPluginSetIncompatible     SyncStatus = "plugin_set_incompatible"
	StatusPluginVersionIncompatible SyncStatus = "plugin_version_incompatible"
)

// PluginInfo is one entry of basic_info's plugin list.
type PluginInfo struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// BasicInfo is the DP's first frame.
type BasicInfo struct {
	Type        string            `json:"type"`
	Plugins     []PluginInfo      `json:"plugins"`
	ProcessConf map[string]any    `json:"process_conf,omitempty"`
	Filters     json.RawMessage   `json:"filters,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Reconfigure is the CP's configuration frame (before compression).
type Reconfigure struct {
	Type        string            `json:"type"`
	Timestamp   float64           `json:"timestamp"`
	ConfigTable map[string]any    `json:"config_table"`
	ConfigHash  string            `json:"config_hash"`
	Hashes      confighash.Hashes `json:"hashes,omitempty"`
}

// LocalPlugins lists kiln's bundled plugins as a DP announces them and a
// CP compares them: sorted by name, each with its version.
func LocalPlugins() []PluginInfo {
	names := entity.PluginNames()
	sort.Strings(names)
	out := make([]PluginInfo, len(names))
	for i, n := range names {
		out[i] = PluginInfo{Name: n, Version: entity.PluginVersion}
	}
	return out
}

// EncodeBasicInfo renders the DP's first frame.
func EncodeBasicInfo(b BasicInfo) ([]byte, error) {
	b.Type = "basic_info"
	if b.Plugins == nil {
		b.Plugins = []PluginInfo{}
	}
	return json.Marshal(b)
}

// DecodeBasicInfo parses and checks a DP's first frame as Kong's CP does:
// a JSON object of type "basic_info" with a plugins array.
func DecodeBasicInfo(data []byte) (*BasicInfo, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("failed to decode websocket basic info data: %w", err)
	}
	var typ string
	if err := json.Unmarshal(raw["type"], &typ); err != nil || typ != "basic_info" {
		if typ == "" {
			typ = "unknown"
		}
		return nil, fmt.Errorf("invalid basic info data type: %s", typ)
	}
	var plugins []json.RawMessage
	if err := json.Unmarshal(raw["plugins"], &plugins); err != nil || plugins == nil {
		return nil, errors.New("missing plugins in basic info data")
	}
	b := &BasicInfo{Type: typ, Plugins: make([]PluginInfo, 0, len(plugins))}
	for i, p := range plugins {
		var pi struct {
			Name    string `json:"name"`
			Version any    `json:"version"`
		}
		if err := json.Unmarshal(p, &pi); err != nil || pi.Name == "" {
			return nil, fmt.Errorf("basic info plugins[%d]: expected an object with a name", i)
		}
		v, _ := pi.Version.(string)
		b.Plugins = append(b.Plugins, PluginInfo{Name: pi.Name, Version: v})
	}
	if l, ok := raw["labels"]; ok && string(l) != "null" {
		var labels map[string]any
		if err := json.Unmarshal(l, &labels); err != nil {
			return nil, fmt.Errorf("basic info labels: expected an object: %w", err)
		}
		b.Labels = make(map[string]string, len(labels))
		for k, v := range labels {
			if s, ok := v.(string); ok {
				b.Labels[k] = s
			} else {
				b.Labels[k] = fmt.Sprint(v)
			}
		}
	}
	if pc, ok := raw["process_conf"]; ok {
		_ = json.Unmarshal(pc, &b.ProcessConf)
	}
	b.Filters = raw["filters"]
	return b, nil
}

// NewReconfigure builds the frame for a config_table, computing its hashes.
func NewReconfigure(table map[string]any, now time.Time) (*Reconfigure, error) {
	hash, hashes, err := confighash.Config(table)
	if err != nil {
		return nil, fmt.Errorf("hash the configuration: %w", err)
	}
	return &Reconfigure{
		Type: "reconfigure", Timestamp: float64(now.UnixMilli()) / 1000,
		ConfigTable: table, ConfigHash: hash, Hashes: hashes,
	}, nil
}

// EncodeReconfigure renders a frame as gzip-compressed JSON.
func EncodeReconfigure(r *Reconfigure) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(r); err != nil {
		return nil, fmt.Errorf("encode reconfigure frame: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress reconfigure frame: %w", err)
	}
	return buf.Bytes(), nil
}

// ErrNotReconfigure means a CP frame decoded fine but is of another type;
// Kong's DP ignores such frames.
var ErrNotReconfigure = errors.New("not a reconfigure frame")

// DecodeReconfigure inflates and parses a CP frame. A frame without a
// config_hash gets one computed, as Kong's DP does.
func DecodeReconfigure(data []byte) (*Reconfigure, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("inflate reconfigure frame: %w", err)
	}
	inflated, err := io.ReadAll(io.LimitReader(zr, MaxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("inflate reconfigure frame: %w", err)
	}
	if len(inflated) > MaxInflated {
		return nil, fmt.Errorf("reconfigure frame inflates beyond %d MiB", MaxInflated>>20)
	}
	var r Reconfigure
	if err := json.Unmarshal(inflated, &r); err != nil {
		return nil, fmt.Errorf("decode reconfigure frame: %w", err)
	}
	if r.Type != "reconfigure" {
		return nil, fmt.Errorf("%w (type %q)", ErrNotReconfigure, r.Type)
	}
	if r.ConfigTable == nil {
		return nil, errors.New("reconfigure frame without a config_table")
	}
	if r.ConfigHash == "" {
		if r.ConfigHash, r.Hashes, err = confighash.Config(r.ConfigTable); err != nil {
			return nil, err
		}
	}
	if !validHash(r.ConfigHash) {
		return nil, fmt.Errorf("reconfigure frame config_hash %q is not 32 hexadecimal characters", r.ConfigHash)
	}
	return &r, nil
}

var hashRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func validHash(h string) bool { return hashRE.MatchString(h) }

var majorMinorRE = regexp.MustCompile(`^(\d+)\.(\d+)\.\d+`)

// majorMinor extracts "x.y" from a "x.y.z..." version.
func majorMinor(v string) (major, minor int, ok bool) {
	m := majorMinorRE.FindStringSubmatch(v)
	if m == nil {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(m[1])
	minor, err2 := strconv.Atoi(m[2])
	return major, minor, err1 == nil && err2 == nil
}

// CheckVersion applies Kong's rule: the DP's major version must equal the
// CP's and its minor must not be newer; the patch level is ignored.
func CheckVersion(cp, dp string) (SyncStatus, error) {
	cpMaj, cpMin, ok := majorMinor(cp)
	if !ok {
		return StatusKongVersionIncompatible, fmt.Errorf("data plane version %s is incompatible with control plane version", dp)
	}
	dpMaj, dpMin, ok := majorMinor(dp)
	if !ok {
		return StatusKongVersionIncompatible, fmt.Errorf("data plane version is incompatible with control plane version %s (%d.x.y are accepted)", cp, cpMaj)
	}
	if cpMaj != dpMaj {
		return StatusKongVersionIncompatible, fmt.Errorf("data plane version %s is incompatible with control plane version %s (%d.x.y are accepted)", dp, cp, cpMaj)
	}
	if cpMin < dpMin {
		return StatusKongVersionIncompatible, fmt.Errorf("data plane version %s is incompatible with older control plane version %s", dp, cp)
	}
	return StatusNormal, nil
}

type pluginVersion struct {
	version      string
	major, minor int
	versioned    bool
}

func pluginMap(list []PluginInfo) map[string]pluginVersion {
	out := make(map[string]pluginVersion, len(list))
	for _, p := range list {
		pv := pluginVersion{version: p.Version}
		pv.major, pv.minor, pv.versioned = majorMinor(p.Version)
		out[p.Name] = pv
	}
	return out
}

// checkPlugins is Kong's check_configuration_compatibility: every plugin
// configured on the CP must exist on the DP with the same major version and
// a minor version no newer than the CP's.
func checkPlugins(cp []PluginInfo, cpMap map[string]pluginVersion, configured map[string]bool, dp map[string]pluginVersion) (SyncStatus, error) {
	for _, p := range cp {
		if !configured[p.Name] {
			continue
		}
		d, ok := dp[p.Name]
		if !ok {
			if p.Version != "" {
				return StatusPluginSetIncompatible, fmt.Errorf("configured %s plugin %s is missing from data plane", p.Name, p.Version)
			}
			return StatusPluginSetIncompatible, fmt.Errorf("configured %s plugin is missing from data plane", p.Name)
		}
		c := cpMap[p.Name]
		if c.versioned && d.versioned && (c.major != d.major || c.minor < d.minor) {
			return StatusPluginVersionIncompatible, fmt.Errorf("configured data plane %s plugin version %s is different to control plane plugin version %s", p.Name, d.version, c.version)
		}
	}
	return StatusNormal, nil
}
