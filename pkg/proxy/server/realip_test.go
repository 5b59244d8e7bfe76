package server

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestParseTrustedIPs(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "", want: ""},
		{in: "10.0.0.0/8,192.168.1.1", want: "10.0.0.0/8 192.168.1.1/32"},
		{in: " 0.0.0.0/0 , ::/0 ,unix:", want: "0.0.0.0/0 ::/0"},
		{in: "10.1.2.3/8,2001:db8::1", want: "10.0.0.0/8 2001:db8::1/128"},
		{in: "10.0.0.0/33", err: `"10.0.0.0/33"`},
		{in: "10.0.0.1,example.com", err: `"example.com"`},
		{in: "fe80::1%eth0", err: `"fe80::1%eth0"`},
	} {
		got, err := ParseTrustedIPs(strings.Split(tc.in, ","))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one naming %s", tc.in, err, tc.err)
			}
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if err != nil || strings.Join(s, " ") != tc.want {
			t.Errorf("%q: %v %v, want %s", tc.in, s, err, tc.want)
		}
	}
}

func TestNewRealIP(t *testing.T) {
	if ri, err := newRealIP(Options{RealIPHeader: "X-Forwarded-For"}); ri != nil || err != nil {
		t.Errorf("no trusted_ips: %v %v, want no realip work at all", ri, err)
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	ri, err := newRealIP(Options{RealIPHeader: "Proxy_Protocol", TrustedIPs: trusted})
	if err != nil || ri == nil || !ri.proxyProto {
		t.Fatalf("proxy_protocol: %+v %v, want the PROXY header mode", ri, err)
	}
	r := &http.Request{Header: http.Header{"X-Real-Ip": {"192.0.2.1"}}}
	if got, ok := ri.client(r, "10.0.0.1"); got != "10.0.0.1" || !ok {
		t.Errorf("no PROXY address: %q %v, want the trusted peer (headers ignored)", got, ok)
	}
	r = r.WithContext(context.WithValue(context.Background(), proxyAddrKey{}, "203.0.113.7"))
	if got, ok := ri.client(r, "10.0.0.1"); got != "203.0.113.7" || !ok {
		t.Errorf("trusted peer: %q %v, want the PROXY source", got, ok)
	}
	if got, ok := ri.client(r, "192.0.2.9"); got != "192.0.2.9" || ok {
		t.Errorf("untrusted peer: %q %v, want the peer", got, ok)
	}
}

func TestRealIPClient(t *testing.T) {
	trusted, err := ParseTrustedIPs([]string{"10.0.0.0/8", "192.168.1.1", "2001:db8:1::/48"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		header    string
		recursive bool
		peer      string
		values    []string
		want      string
		trusted   bool
	}{
		{"untrusted peer", "", false, "127.0.0.1", []string{"1.2.3.4"}, "127.0.0.1", false},
		{"trusted, no header", "", false, "10.0.0.1", nil, "10.0.0.1", true},
		{"x-real-ip", "", false, "10.0.0.1", []string{"1.2.3.4"}, "1.2.3.4", true},
		{"x-real-ip first line only", "", false, "10.0.0.1", []string{"1.2.3.4", "5.6.7.8"}, "1.2.3.4", true},
		{"x-real-ip list, last entry", "", false, "10.0.0.1", []string{"1.2.3.4, 5.6.7.8"}, "5.6.7.8", true},
		{"ipv4 with port", "", false, "10.0.0.1", []string{"1.2.3.4:5678"}, "1.2.3.4", true},
		{"ipv6 canonicalised", "", false, "10.0.0.1", []string{"2001:DB8:0::7"}, "2001:db8::7", true},
		{"bracketed ipv6", "", false, "10.0.0.1", []string{"[2001:db8::7]"}, "2001:db8::7", true},
		{"zone refused", "", false, "10.0.0.1", []string{"fe80::1%eth0"}, "10.0.0.1", true},
		{"garbage", "", false, "10.0.0.1", []string{"01.2.3.4"}, "10.0.0.1", true},
		{"empty value", "", false, "10.0.0.1", []string{" , "}, "10.0.0.1", true},
		{"ipv4-mapped peer", "", false, "::ffff:10.0.0.1", []string{"1.2.3.4"}, "1.2.3.4", true},
		{"ipv6 peer", "", false, "2001:db8:1::5", []string{"1.2.3.4"}, "1.2.3.4", true},
		{"xff non-recursive", "X-Forwarded-For", false, "10.0.0.1", []string{"1.1.1.1, 10.0.0.2"}, "10.0.0.2", true},
		{"xff non-recursive, last line", "X-Forwarded-For", false, "10.0.0.1", []string{"1.1.1.1", "2.2.2.2, 3.3.3.3"}, "3.3.3.3", true},
		{"xff recursive", "X-Forwarded-For", true, "10.0.0.1", []string{"1.1.1.1, 2.2.2.2, 10.0.0.2,192.168.1.1"}, "2.2.2.2", true},
		{"xff recursive over lines", "X-Forwarded-For", true, "10.0.0.1", []string{"1.1.1.1, 2.2.2.2", "10.9.9.9", "192.168.1.1"}, "2.2.2.2", true},
		{"xff recursive, all trusted", "X-Forwarded-For", true, "10.0.0.1", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3", true},
		{"xff recursive, bad entry stops", "X-Forwarded-For", true, "10.0.0.1", []string{"1.1.1.1, bad, 10.0.0.2"}, "10.0.0.2", true},
		{"xff recursive, bad last entry", "X-Forwarded-For", true, "10.0.0.1", []string{"1.1.1.1, bad"}, "10.0.0.1", true},
		{"xff recursive, untrusted peer", "X-Forwarded-For", true, "127.0.0.1", []string{"1.1.1.1"}, "127.0.0.1", false},
		{"recursive custom header", "X-Client-Chain", true, "10.0.0.1", []string{"1.1.1.1 10.0.0.5"}, "1.1.1.1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ri, err := newRealIP(Options{TrustedIPs: trusted, RealIPHeader: tc.header, RealIPRecursive: tc.recursive})
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			for _, v := range tc.values {
				h.Add(ri.header, v)
			}
			got, ok := ri.client(&http.Request{Header: h}, tc.peer)
			if got != tc.want || ok != tc.trusted {
				t.Errorf("client = %q, %v; want %q, %v", got, ok, tc.want, tc.trusted)
			}
		})
	}
}

// FuzzRealIPClient feeds arbitrary forwarded headers from a trusted peer:
// the result is always the peer or an address the header carried, in
// canonical form.
func FuzzRealIPClient(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.1.1.1, 10.0.0.2", "[2001:db8::1]:80", " ,,", "a, b,10.0.0.1", "::ffff:1.2.3.4"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	trusted, err := ParseTrustedIPs([]string{"10.0.0.0/8", "::/0"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string, recursive bool) {
		ri, err := newRealIP(Options{TrustedIPs: trusted, RealIPHeader: "X-Forwarded-For", RealIPRecursive: recursive})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ri.client(&http.Request{Header: http.Header{"X-Forwarded-For": {v, "10.0.0.9"}}}, "10.0.0.1")
		if !ok {
			t.Fatal("a trusted peer was not trusted")
		}
		if got == "10.0.0.1" {
			return
		}
		a, err := netip.ParseAddr(got)
		if err != nil || a.String() != got {
			t.Fatalf("client %q is not a canonical address (header %q)", got, v)
		}
	})
}

// BenchmarkRealIPClient is the per-request cost with trusted_ips set: a
// recursive X-Forwarded-For walk over three IPv4 entries.
func BenchmarkRealIPClient(b *testing.B) {
	trusted, err := ParseTrustedIPs([]string{"10.0.0.0/8", "192.168.1.1"})
	if err != nil {
		b.Fatal(err)
	}
	ri, err := newRealIP(Options{TrustedIPs: trusted, RealIPHeader: "X-Forwarded-For", RealIPRecursive: true})
	if err != nil {
		b.Fatal(err)
	}
	h := &http.Request{Header: http.Header{"X-Forwarded-For": {"203.0.113.9, 10.1.1.1, 192.168.1.1"}}}
	b.ReportAllocs()
	for b.Loop() {
		if ip, _ := ri.client(h, "10.0.0.1"); ip != "203.0.113.9" {
			b.Fatal(ip)
		}
	}
}
