package headerconf_test

import (
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/pkg/proxy/headerconf"
)

func TestParseHeaders(t *testing.T) {
	h := headerconf.Server | headerconf.Via | headerconf.ProxyLatency | headerconf.ResponseLatency |
		headerconf.AdminLatency | headerconf.UpstreamLatency | headerconf.UpstreamStatus | headerconf.RequestID
	tests := []struct {
		in        string
		has, lack headerconf.Set
		err       string
	}{
		{in: headerconf.DefaultHeaders, has: headerconf.Default, lack: headerconf.UpstreamStatus},
		{in: "off", lack: h},
		{in: " OFF ", lack: h},
		{in: "off, Via", lack: h},
		{in: "Via, off", has: headerconf.Via, lack: h &^ headerconf.Via},
		{in: "via", has: headerconf.Via, lack: h &^ headerconf.Via},
		{in: "server_tokens", has: headerconf.Server | headerconf.Via, lack: headerconf.RequestID | headerconf.ProxyLatency},
		{in: "latency_tokens", has: headerconf.ProxyLatency | headerconf.ResponseLatency | headerconf.AdminLatency | headerconf.UpstreamLatency,
			lack: headerconf.Server | headerconf.Via | headerconf.RequestID | headerconf.UpstreamStatus},
		{in: "X-Kong-Upstream-Status,x-kong-request-id", has: headerconf.UpstreamStatus | headerconf.RequestID, lack: headerconf.Via},
		{in: "", lack: h},
		{in: "Via, X-Kong-Latency", err: `invalid entry "X-Kong-Latency": use off or a comma-separated list of Server, Via`},
		{in: "X-Kong-Request-Id-Upstream", err: "invalid entry"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := headerconf.ParseHeaders(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseHeaders(%q) error = %v, want one containing %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == 0 {
				t.Fatalf("ParseHeaders(%q) is the zero Set, which means not configured", tt.in)
			}
			if !got.Has(tt.has) || got&tt.lack != 0 {
				t.Fatalf("ParseHeaders(%q) = %b: want %b set and %b clear", tt.in, got, tt.has, tt.lack)
			}
		})
	}
	if got, _ := headerconf.ParseHeaders(headerconf.DefaultHeaders); got != headerconf.Default {
		t.Fatalf("Default = %b, parsed default setting = %b", headerconf.Default, got)
	}
}

func TestParseHeadersUpstream(t *testing.T) {
	for in, want := range map[string]bool{"X-Kong-Request-Id": true, "x-kong-request-id": true, "off": false, "off, X-Kong-Request-Id": false} {
		got, err := headerconf.ParseHeadersUpstream(in)
		if err != nil {
			t.Fatal(err)
		}
		if got.Has(headerconf.RequestIDUpstream) != want {
			t.Fatalf("ParseHeadersUpstream(%q) = %b, want X-Kong-Request-Id %v", in, got, want)
		}
	}
	if got, _ := headerconf.ParseHeadersUpstream(headerconf.DefaultHeadersUpstream); got != headerconf.DefaultUpstream {
		t.Fatalf("DefaultUpstream = %b, parsed default = %b", headerconf.DefaultUpstream, got)
	}
	if _, err := headerconf.ParseHeadersUpstream("Via"); err == nil || !strings.Contains(err.Error(), `invalid entry "Via": use off or a comma-separated list of X-Kong-Request-Id`) {
		t.Fatalf("ParseHeadersUpstream(Via) error = %v", err)
	}
	var unset headerconf.Set
	if unset.Or(headerconf.Default) != headerconf.Default {
		t.Fatal("the zero Set does not take the default")
	}
	off, _ := headerconf.ParseHeaders("off")
	if off.Or(headerconf.Default) != off {
		t.Fatal("an explicit off takes the default")
	}
}

func TestEnabledMaps(t *testing.T) {
	on := headerconf.Default.Enabled()
	if len(on) != 8 || !on["Via"] || !on["X-Kong-Admin-Latency"] || on["X-Kong-Upstream-Status"] {
		t.Fatalf("default enabled headers %v", on)
	}
	if up := headerconf.DefaultUpstream.EnabledUpstream(); !up["X-Kong-Request-Id"] {
		t.Fatalf("default upstream headers %v", up)
	}
	if got := headerconf.Tokens(" server_tokens,, Via "); len(got) != 2 || got[0] != "server_tokens" || got[1] != "Via" {
		t.Fatalf("Tokens = %q", got)
	}
}
