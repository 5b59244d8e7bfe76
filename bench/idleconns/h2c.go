package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// fetchH2C is a fetcher over HTTP/2 with prior knowledge: the preface and
// SETTINGS, then req's method, target, Host and headers as stream 1;
// it reads until the response ends (acknowledging the server's SETTINGS).
func fetchH2C(c net.Conn, req []byte) error {
	fields, err := h2Fields(req)
	if err != nil {
		return err
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		_ = enc.WriteField(f)
	}
	var out bytes.Buffer
	out.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&out, nil)
	_ = fr.WriteSettings()
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	if _, err := c.Write(out.Bytes()); err != nil {
		return err
	}
	rf := http2.NewFramer(c, c)
	rf.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := rf.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = rf.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if st := f.PseudoValue("status"); f.StreamID == 1 && !strings.HasPrefix(st, "2") {
				return fmt.Errorf("status %s", st)
			}
			if f.StreamID == 1 && f.StreamEnded() {
				return nil
			}
		case *http2.DataFrame:
			if f.StreamID == 1 && f.StreamEnded() {
				return nil
			}
		case *http2.RSTStreamFrame:
			return fmt.Errorf("stream reset: %v", f.ErrCode)
		case *http2.GoAwayFrame:
			return fmt.Errorf("GOAWAY: %v", f.ErrCode)
		}
	}
}

// h2Fields turns an HTTP/1.1 request head (getreq's) into HTTP/2 fields.
func h2Fields(req []byte) ([]hpack.HeaderField, error) {
	lines := strings.Split(strings.TrimRight(string(req), "\r\n"), "\r\n")
	parts := strings.Fields(lines[0])
	if len(parts) != 3 {
		return nil, errors.New("idleconns: a request line without method, target and version")
	}
	fields := []hpack.HeaderField{{Name: ":method", Value: parts[0]}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: parts[1]}}
	var regular []hpack.HeaderField // after every pseudo-field
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		switch name {
		case "host":
			fields = append(fields, hpack.HeaderField{Name: ":authority", Value: value})
		case "connection":
		default:
			if name != "" {
				regular = append(regular, hpack.HeaderField{Name: name, Value: value})
			}
		}
	}
	return append(fields, regular...), nil
}
