// Package getreq builds the raw HTTP/1.1 GET request the bench load
// generators (fixedrate, idleconns) send over and over on keep-alive
// connections, from their -url and -H flags.
package getreq

import (
	"fmt"
	"net/url"
	"strings"
)

// Build checks target (an http:// URL with a host) and header (empty, or
// "Name: value") and returns the address to dial and the request bytes.
func Build(target, header string) (addr string, req []byte, err error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", nil, fmt.Errorf("-url %q: give an http:// URL with a host", target)
	}
	s := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	if header != "" {
		name, value, ok := strings.Cut(header, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return "", nil, fmt.Errorf(`-H %q: give "Name: value"`, header)
		}
		s += strings.TrimSpace(name) + ": " + strings.TrimSpace(value) + "\r\n"
	}
	return u.Host, []byte(s + "\r\n"), nil
}
