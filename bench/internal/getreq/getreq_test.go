package getreq

import "testing"

func TestBuild(t *testing.T) {
	for _, tc := range []struct {
		target, header, addr, req string
		bad                       bool
	}{
		{target: "http://127.0.0.1:8000/1k", addr: "127.0.0.1:8000", req: "GET /1k HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"},
		{target: "http://h:1/a?b=c", header: "apikey:  k ", addr: "h:1", req: "GET /a?b=c HTTP/1.1\r\nHost: h:1\r\napikey: k\r\n\r\n"},
		{target: "https://h/", bad: true},
		{target: "/relative", bad: true},
		{target: "http://h/", header: "no colon", bad: true},
		{target: "http://h/", header: ": value", bad: true},
	} {
		addr, req, err := Build(tc.target, tc.header)
		if tc.bad {
			if err == nil {
				t.Errorf("Build(%q, %q) accepted", tc.target, tc.header)
			}
			continue
		}
		if err != nil || addr != tc.addr || string(req) != tc.req {
			t.Errorf("Build(%q, %q) = %q, %q, %v; want %q, %q", tc.target, tc.header, addr, req, err, tc.addr, tc.req)
		}
	}
}
