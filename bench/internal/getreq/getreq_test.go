package getreq

import "testing"

func TestBuild(t *testing.T) {
	for _, tc := range []struct {
		target, header, req string
		want                Target
		bad                 bool
	}{
		{target: "http://127.0.0.1:8000/1k", want: Target{Addr: "127.0.0.1:8000"}, req: "GET /1k HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"},
		{target: "http://h:1/a?b=c", header: "apikey:  k ", want: Target{Addr: "h:1"}, req: "GET /a?b=c HTTP/1.1\r\nHost: h:1\r\napikey: k\r\n\r\n"},
		{target: "https://localhost:8443/1k", want: Target{Addr: "localhost:8443", ServerName: "localhost"}, req: "GET /1k HTTP/1.1\r\nHost: localhost:8443\r\n\r\n"},
		{target: "https://h/", want: Target{Addr: "h:443", ServerName: "h"}, req: "GET / HTTP/1.1\r\nHost: h\r\n\r\n"},
		{target: "ftp://h/", bad: true},
		{target: "/relative", bad: true},
		{target: "http://h/", header: "no colon", bad: true},
		{target: "http://h/", header: ": value", bad: true},
	} {
		got, req, err := Build(tc.target, tc.header)
		if tc.bad {
			if err == nil {
				t.Errorf("Build(%q, %q) accepted", tc.target, tc.header)
			}
			continue
		}
		if err != nil || got != tc.want || string(req) != tc.req {
			t.Errorf("Build(%q, %q) = %+v, %q, %v; want %+v, %q", tc.target, tc.header, got, req, err, tc.want, tc.req)
		}
	}
}
