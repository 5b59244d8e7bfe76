package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kiln-dev/kiln/pkg/proxy/confighash"
	"github.com/kiln-dev/kiln/pkg/proxy/declarative"
	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

// DataPlaneOptions configure a DataPlane. Store, ControlPlane and TLS are
// required.
type DataPlaneOptions struct {
	// Store receives each configuration atomically (Memory.ReplaceFrom);
	// the gateway recompiles its engine from it.
	Store *store.Memory
	// ControlPlane is the CP's cluster listener, host:port.
	ControlPlane string
	TLS          *TLS
	NodeID       string
	Hostname     string
	// Node: the Kong version and plugins announced in basic_info.
	Node
	Labels map[string]string
	// ProcessConf is reported as basic_info.process_conf (no secrets).
	ProcessConf map[string]any
	// PersistPath is the file the last applied configuration is written to
	// and loaded from at start ("" disables persistence).
	PersistPath string
	// PingInterval defaults to 30 s.
	PingInterval time.Duration
	// ReconnectDelay returns the wait before redialling (default a random
	// 5–10 s, as Kong).
	ReconnectDelay func() time.Duration
}

// DataPlane keeps a node's in-memory store in sync with a control plane.
type DataPlane struct {
	o   DataPlaneOptions
	log *slog.Logger

	mu   sync.Mutex // serialises applies
	hash string     // current config hash (confighash.Empty when empty)
}

// NewDataPlane checks the options.
func NewDataPlane(o DataPlaneOptions) (*DataPlane, error) {
	if o.Store == nil || o.TLS == nil || o.ControlPlane == "" {
		return nil, errors.New("cluster: a data plane needs an in-memory store, cluster TLS material and --cluster-control-plane")
	}
	if _, _, err := net.SplitHostPort(o.ControlPlane); err != nil {
		return nil, fmt.Errorf("--cluster-control-plane %q: expected host:port: %w", o.ControlPlane, err)
	}
	if o.NodeID == "" {
		o.NodeID = entity.NewID()
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	o.setDefaults()
	if o.PingInterval <= 0 {
		o.PingInterval = PingInterval
	}
	if o.ReconnectDelay == nil {
		o.ReconnectDelay = func() time.Duration { return 5*time.Second + rand.N(5*time.Second+1) }
	}
	return &DataPlane{o: o, hash: confighash.Empty,
		log: o.Log.With("component", "clustering", "role", "data_plane", "control_plane", o.ControlPlane)}, nil
}

// ConfigHash is the hash of the applied configuration (all zeros when
// empty), the value sent in pings.
func (dp *DataPlane) ConfigHash() string {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return dp.hash
}

// LoadPersisted applies the configuration saved by a previous run, so a
// restarted DP serves while the CP is unreachable. A missing file is not an
// error; an unreadable one is logged and skipped.
func (dp *DataPlane) LoadPersisted(ctx context.Context) error {
	if dp.o.PersistPath == "" {
		return nil
	}
	data, err := os.ReadFile(dp.o.PersistPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the persisted configuration %s: %w", dp.o.PersistPath, err)
	}
	if _, err := dp.Apply(ctx, data, false); err != nil {
		dp.log.Error("ignoring the persisted configuration; waiting for the control plane", "file", dp.o.PersistPath, "error", err)
		return nil
	}
	dp.log.Info("loaded the persisted configuration", "file", dp.o.PersistPath, "config_hash", dp.ConfigHash())
	return nil
}

// Apply decodes a reconfigure frame and, unless its hash is the current
// one, validates it and swaps it into the store atomically; persist also
// writes the frame to PersistPath. It reports whether the store changed.
func (dp *DataPlane) Apply(ctx context.Context, frame []byte, persist bool) (bool, error) {
	msg, err := DecodeReconfigure(frame)
	if err != nil {
		return false, err
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if msg.ConfigHash == dp.hash {
		dp.log.Debug("same config received from control plane, no need to reload")
		return false, nil
	}
	recs, err := declarative.ParseTable(stripWorkspaces(msg.ConfigTable), dp.o.Now())
	if err != nil {
		return false, fmt.Errorf("bad config received from control plane: %w", err)
	}
	hash := msg.ConfigHash
	if recs.Empty() {
		// Kong reports an empty configuration as all zeros whatever the
		// CP's hash of its (workspace-only) table.
		hash = confighash.Empty
	}
	// The store compiles the configuration before taking it (and keeps
	// it for the engine's reload): one that does not compile is refused.
	if err := dp.o.Store.ReplaceFrom(ctx, recs, hash); err != nil {
		return false, fmt.Errorf("bad config received from control plane: %w", err)
	}
	dp.hash = hash
	if persist && dp.o.PersistPath != "" {
		if err := writeAtomic(dp.o.PersistPath, frame); err != nil {
			dp.log.Error("unable to persist the configuration; a restart will wait for the control plane", "error", err)
		}
	}
	return true, nil
}

// stripWorkspaces drops what a Kong CP exports but kiln has no notion of:
// the workspaces collection, each entity's ws_id, and the parameters
// collection (Kong's cluster id).
func stripWorkspaces(table map[string]any) map[string]any {
	out := make(map[string]any, len(table))
	for k, v := range table {
		if k == "workspaces" || k == "parameters" {
			continue
		}
		if list, ok := v.([]any); ok {
			for _, e := range list {
				if m, ok := e.(map[string]any); ok {
					delete(m, "ws_id")
				}
			}
		}
		out[k] = v
	}
	return out
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Run connects to the CP and keeps reconnecting until ctx ends.
func (dp *DataPlane) Run(ctx context.Context) error {
	for {
		err := dp.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		delay := dp.o.ReconnectDelay()
		dp.log.Error("connection to control plane broken", "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// session is one connection: basic_info, then pings and configuration
// frames until the link fails.
func (dp *DataPlane) session(ctx context.Context) error {
	q := url.Values{"node_id": {dp.o.NodeID}, "node_hostname": {dp.o.Hostname}, "node_version": {dp.o.Version}}
	u := url.URL{Scheme: "wss", Host: dp.o.ControlPlane, Path: OutletPath, RawQuery: q.Encode()}
	dialer := websocket.Dialer{
		TLSClientConfig:  dp.o.TLS.clientConfig(dp.o.ControlPlane),
		HandshakeTimeout: 2 * FrameTimeout,
		Proxy:            nil,
	}
	conn, resp, err := dialer.DialContext(ctx, u.String(), nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("dial %s: %w (HTTP %d)", u.Redacted(), err, resp.StatusCode)
		}
		return fmt.Errorf("dial %s: %w", u.Redacted(), err)
	}
	defer conn.Close()
	conn.SetReadLimit(MaxPayload)
	info, err := EncodeBasicInfo(BasicInfo{Plugins: dp.o.Plugins, Labels: dp.o.Labels, ProcessConf: dp.o.ProcessConf})
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(FrameTimeout))
	if err := conn.WriteMessage(websocket.BinaryMessage, info); err != nil {
		return fmt.Errorf("unable to send basic information to control plane: %w", err)
	}
	dp.log.Info("connected to control plane")

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pingNow := make(chan struct{}, 1)
	frames := make(chan []byte, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// The newest frame wins: an older one still waiting is dropped.
	wg.Add(2)
	go func() {
		defer wg.Done()
		dp.applier(ctx, frames, pingNow)
	}()
	go func() {
		defer wg.Done()
		dp.pinger(ctx, conn, pingNow)
	}()

	alive := func() { _ = conn.SetReadDeadline(time.Now().Add(dp.o.PingWait)) }
	alive()
	conn.SetPongHandler(func(string) error { alive(); return nil })
	for {
		typ, data, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("did not receive pong frame from control plane within %s", dp.o.PingWait)
			}
			return fmt.Errorf("error while receiving frame from control plane: %w", err)
		}
		alive()
		if typ != websocket.BinaryMessage {
			dp.log.Info("ignoring an unexpected frame from the control plane", "type", typ)
			continue
		}
		select {
		case <-frames:
		default:
		}
		frames <- data
	}
}

func (dp *DataPlane) applier(ctx context.Context, frames <-chan []byte, pingNow chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case frame := <-frames:
			changed, err := dp.Apply(ctx, frame, true)
			switch {
			case errors.Is(err, ErrNotReconfigure):
				continue
			case err != nil:
				dp.log.Error("unable to update running config", "error", err)
				continue
			case changed:
				dp.log.Info("applied configuration from control plane", "config_hash", dp.ConfigHash())
			}
			select {
			case pingNow <- struct{}{}:
			default:
			}
		}
	}
}

func (dp *DataPlane) pinger(ctx context.Context, conn *websocket.Conn, pingNow <-chan struct{}) {
	t := time.NewTicker(dp.o.PingInterval)
	defer t.Stop()
	for {
		if err := conn.WriteControl(websocket.PingMessage, []byte(dp.ConfigHash()), time.Now().Add(FrameTimeout)); err != nil {
			dp.log.Warn("unable to send ping frame to control plane", "error", err)
		}
		select {
		case <-ctx.Done():
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
			_ = conn.Close()
			return
		case <-t.C:
		case <-pingNow:
		}
	}
}

// NodeID is the id the DP announces.
func (dp *DataPlane) NodeID() string { return dp.o.NodeID }
