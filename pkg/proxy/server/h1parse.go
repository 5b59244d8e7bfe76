package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
)

// maxHeaderBytes bounds a request's or response's header block.
const maxHeaderBytes = 64 << 10

var (
	errHeaderTooLarge = errors.New("header block too large")
	// errRequestLineTooLong: the request line alone overflows the buffer.
	errRequestLineTooLong = errors.New("request line too long")
	errMalformed          = errors.New("malformed HTTP message")
)

// headerBlock reads an HTTP header block (start line, fields, empty line)
// and parses it without per-field allocations: the block is converted to
// one string and every name and value is a substring of it; header value
// slices come from a reused arena. It is reused across messages on one
// connection, so parsed values must not be retained after the message.
type headerBlock struct {
	buf  []byte
	offs []int32
	vals []string
	// hosts holds the Host field's values from the last parse, which
	// leaves them out of the header map (http.Request keeps Host apart).
	hosts []string
}

// reset empties hb for reuse on another connection: its buffers keep
// their capacity (unless an unusually large head grew them), the strings
// of the last message are let go.
func (hb *headerBlock) reset() {
	if cap(hb.buf) > keptHeadBytes {
		*hb = headerBlock{}
		return
	}
	clear(hb.vals[:cap(hb.vals)])
	clear(hb.hosts[:cap(hb.hosts)])
	hb.buf, hb.offs, hb.vals, hb.hosts = hb.buf[:0], hb.offs[:0], hb.vals[:0], hb.hosts[:0]
}

// keptHeadBytes bounds the head buffer a reused headerBlock keeps.
const keptHeadBytes = 4 << 10

// read reads the block into hb.buf (lines without their line endings are
// parsed later). It returns io.EOF when the connection closed cleanly
// before a message started. When the whole block is already buffered it
// is copied in one piece; otherwise it is read line by line.
func (hb *headerBlock) read(br *bufio.Reader) error {
	hb.buf = hb.buf[:0]
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			return err // io.EOF: closed before a message started
		}
	}
	b, _ := br.Peek(br.Buffered())
	if end := headEnd(b); end > 0 && end <= maxHeaderBytes {
		hb.buf = append(hb.buf, b[:end]...)
		_, _ = br.Discard(end)
		return nil
	}
	return hb.readLines(br)
}

// headEnd returns the length of the header block at the start of b,
// through the empty line that ends it, or 0 when b does not hold a whole
// block or starts with an empty line (which readLines skips).
func headEnd(b []byte) int {
	if len(b) == 0 || b[0] == '\r' || b[0] == '\n' {
		return 0
	}
	return blankLineEnd(b)
}

// blankLineEnd returns the offset just past the first empty line that
// follows a line of b ("\n\n" or "\n\r\n"), or 0 when there is none yet.
func blankLineEnd(b []byte) int {
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
}

// readLines is read's general case: the block line by line.
func (hb *headerBlock) readLines(br *bufio.Reader) error {
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				if first {
					return errRequestLineTooLong
				}
				return errHeaderTooLarge
			}
			if first && len(line) == 0 && err == io.EOF {
				return io.EOF
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if first && (len(line) == 2 && line[0] == '\r' || len(line) == 1) {
			// Tolerate empty lines before a request (RFC 9112 §2.2).
			continue
		}
		first = false
		if len(hb.buf)+len(line) > maxHeaderBytes {
			return errHeaderTooLarge
		}
		hb.buf = append(hb.buf, line...)
		if len(line) == 2 && line[0] == '\r' || len(line) == 1 {
			return nil
		}
	}
}

// tokenChars marks the bytes allowed in a token (RFC 9110 §5.6.2). It is
// never written after initialisation.
var tokenChars = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()

func isTokenByte(c byte) bool { return tokenChars[c] }

// scan validates the block in one pass over its bytes: it rewrites field
// names in place to Go's canonical form (same length, so offsets stay
// valid) and records the offsets of the start line and of every name and
// trimmed value in hb.offs. It reports false for a malformed block
// (invalid name characters, obsolete line folding, stray CR or NUL).
func (hb *headerBlock) scan() bool {
	b := hb.buf
	offs := hb.offs[:0]
	i := 0
	for i < len(b) && b[i] != '\n' {
		i++
	}
	if i >= len(b) {
		return false
	}
	end := i
	if end > 0 && b[end-1] == '\r' {
		end--
	}
	offs = append(offs, 0, int32(end))
	i++
	for i < len(b) {
		if b[i] == '\n' || (b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n') {
			hb.offs = offs
			return true // end of block
		}
		if b[i] == ' ' || b[i] == '\t' {
			return false // obsolete line folding is rejected
		}
		ns := i
		upper := true
		for i < len(b) && b[i] != ':' {
			c := b[i]
			if !isTokenByte(c) {
				return false
			}
			if upper && c >= 'a' && c <= 'z' {
				b[i] = c - ('a' - 'A')
			} else if !upper && c >= 'A' && c <= 'Z' {
				b[i] = c + ('a' - 'A')
			}
			upper = c == '-'
			i++
		}
		if i == ns || i >= len(b) {
			return false
		}
		ne := i
		i++ // ':'
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		vs := i
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return false
		}
		line := b[i : i+j]
		// NUL, and CR anywhere but before the LF, are rejected.
		if bytes.IndexByte(line, 0) >= 0 {
			return false
		}
		if k := bytes.IndexByte(line, '\r'); k >= 0 && k != len(line)-1 {
			return false
		}
		i += j
		ve := i
		if ve > vs && b[ve-1] == '\r' {
			ve--
		}
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		offs = append(offs, int32(ns), int32(ne), int32(vs), int32(ve))
		i++
	}
	return false
}

// parse converts the block to fields in h (cleared first) and returns the
// start line. Host fields go to hb.hosts instead of h.
func (hb *headerBlock) parse(h http.Header) (string, bool) {
	if !hb.scan() {
		return "", false
	}
	clear(h)
	hb.vals, hb.hosts = hb.vals[:0], hb.hosts[:0]
	s := string(hb.buf)
	offs := hb.offs
	start := s[offs[0]:offs[1]]
	for k := 2; k+3 < len(offs); k += 4 {
		name, value := s[offs[k]:offs[k+1]], s[offs[k+2]:offs[k+3]]
		if name == "Host" {
			hb.hosts = append(hb.hosts, value)
			continue
		}
		if cur, ok := h[name]; ok {
			h[name] = append(cur, value)
			continue
		}
		n := len(hb.vals)
		hb.vals = append(hb.vals, value)
		h[name] = hb.vals[n : n+1 : n+1]
	}
	return start, true
}

// hdrField is one header field of an upstream response: a canonical name
// and its trimmed value.
type hdrField struct{ name, value string }

// fields converts the block to a list of fields in the order received
// (appended to dst[:0]) and returns the start line. Names and values are
// substrings of one string, so they stay valid after hb is reused.
func (hb *headerBlock) fields(dst []hdrField) (string, []hdrField, bool) {
	if !hb.scan() {
		return "", dst[:0], false
	}
	s := string(hb.buf)
	offs := hb.offs
	dst = dst[:0]
	for k := 2; k+3 < len(offs); k += 4 {
		dst = append(dst, hdrField{s[offs[k]:offs[k+1]], s[offs[k+2]:offs[k+3]]})
	}
	return s[offs[0]:offs[1]], dst, true
}

// upResponse is an upstream response head plus its body reader.
type upResponse struct {
	status        int
	reason        string
	fields        []hdrField // canonical names; Content-Length dropped when chunked
	connTokens    []string   // the Connection header's tokens
	contentLength int64      // -1 when unknown
	chunked       bool
	close         bool
	http10        bool // an HTTP/1.0 response
	body          io.Reader
	lr            lengthReader
}

// lengthReader reads exactly n bytes.
type lengthReader struct {
	r io.Reader
	n int64
}

func (l *lengthReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if err == io.EOF && l.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if l.n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// chunkedBody decodes a chunked body and consumes the trailer section, so
// the connection is positioned at the next response.
type chunkedBody struct {
	cr   io.Reader
	br   *bufio.Reader
	done bool
}

func (c *chunkedBody) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	n, err := c.cr.Read(p)
	if err == io.EOF {
		for {
			line, lerr := c.br.ReadSlice('\n')
			if lerr != nil {
				return n, io.ErrUnexpectedEOF
			}
			if len(line) <= 2 {
				break
			}
		}
		c.done = true
	}
	return n, err
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// readResponse parses an upstream response head from uc and prepares its
// body reader. Interim 1xx responses (other than 101) are skipped.
func (uc *upConn) readResponse(method string) (*upResponse, error) {
	resp := &uc.resp
	var (
		cl                         string
		clSeen, clConflict, teSeen bool
		teChunked                  bool
	)
	for {
		if err := uc.hb.read(uc.br); err != nil {
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		start, fields, ok := uc.hb.fields(resp.fields)
		resp.fields = fields
		if !ok {
			return nil, errMalformed
		}
		// HTTP/1.x SP 3DIGIT [SP reason]
		if len(start) < 12 || !strings.HasPrefix(start, "HTTP/1.") || start[8] != ' ' || (len(start) > 12 && start[12] != ' ') {
			return nil, errMalformed
		}
		code, err := strconv.Atoi(start[9:12])
		if err != nil || code < 100 || code > 999 {
			return nil, errMalformed
		}
		resp.status, resp.reason = code, strings.TrimSpace(start[12:])
		resp.connTokens = resp.connTokens[:0]
		cl, clSeen, clConflict, teSeen, teChunked = "", false, false, false, false
		keepAlive, closeConn := false, false
		for _, f := range fields {
			switch f.name {
			case "Connection":
				for v := f.value; v != ""; {
					var t string
					t, v, _ = strings.Cut(v, ",")
					if t = strings.TrimSpace(t); t == "" {
						continue
					}
					resp.connTokens = append(resp.connTokens, t)
					keepAlive = keepAlive || strings.EqualFold(t, "keep-alive")
					closeConn = closeConn || strings.EqualFold(t, "close")
				}
			case "Transfer-Encoding":
				teSeen = true
				teChunked = teChunked || hasToken1(f.value, "chunked")
			case "Content-Length":
				if !clSeen {
					cl, clSeen = f.value, true
				} else if f.value != cl {
					clConflict = true
				}
			}
		}
		resp.http10 = start[7] == '0'
		resp.close = resp.http10 && !keepAlive || closeConn
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			continue
		}
		break
	}
	resp.contentLength, resp.chunked = -1, false
	switch {
	case resp.status == http.StatusSwitchingProtocols:
		resp.body = eofReader{}
		return resp, nil
	case method == http.MethodHead || resp.status == http.StatusNoContent || resp.status == http.StatusNotModified:
		resp.body = eofReader{}
		if clSeen {
			if n, ok := parseContentLength(cl); ok {
				resp.contentLength = n
			}
		}
		resp.lr.n = 0
		return resp, nil
	}
	if teSeen {
		// HTTP/1.0 has no transfer codings: such a response's framing is
		// faulty (RFC 9112 §6.1), as is any coding but chunked.
		if !teChunked || resp.http10 {
			return nil, errMalformed
		}
		resp.chunked = true
		if clSeen {
			// Both framings: chunked wins, and the connection, which
			// may be out of step with the upstream, is not reused
			// (RFC 9112 §6.3).
			resp.fields = dropField(resp.fields, "Content-Length")
			resp.close = true
		}
		resp.body = &chunkedBody{cr: httputil.NewChunkedReader(uc.br), br: uc.br}
		return resp, nil
	}
	if clSeen {
		n, ok := parseContentLength(cl)
		if !ok || clConflict {
			return nil, errMalformed
		}
		resp.contentLength = n
		resp.lr = lengthReader{r: uc.br, n: n}
		resp.body = &resp.lr
		return resp, nil
	}
	// Delimited by the connection closing.
	resp.close = true
	resp.body = uc.br
	return resp, nil
}

// parseContentLength reads a Content-Length value, which is digits only
// (RFC 9110 §8.6); strconv.ParseInt would also take "+1" and "-0", which
// other HTTP implementations refuse: two parsers that disagree on a
// message's length are how requests are smuggled.
func parseContentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 { // 18 digits always fit an int64
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// validHost reports whether a request's host (Host header, absolute
// target or :authority) is one nginx, and so Kong, accepts: not empty, no
// "..", no path separator, no control character or space. A host such as
// "..", "a/b" or "a b" would otherwise reach routing, logs, X-Forwarded-Host
// and, with preserve_host, the upstream.
func validHost(h string) bool {
	hostLen, literal, inPort := len(h), false, false
	lastDot := -2
	for i := 0; i < len(h); i++ {
		switch c := h[i]; c {
		case '.':
			if lastDot == i-1 {
				return false
			}
			lastDot = i
		case ':':
			if !literal && !inPort {
				hostLen, inPort = i, true
			}
		case '[':
			if i == 0 {
				literal = true
			}
		case ']':
			if literal && !inPort {
				hostLen, literal, inPort = i+1, false, true
			}
		case '/':
			return false
		default:
			if c <= ' ' || c == 0x7f {
				return false
			}
		}
	}
	if lastDot == hostLen-1 {
		hostLen-- // a trailing dot does not count
	}
	return hostLen > 0
}

// dropField removes every field named name, in place.
func dropField(fields []hdrField, name string) []hdrField {
	out := fields[:0]
	for _, f := range fields {
		if f.name != name {
			out = append(out, f)
		}
	}
	return out
}

// header returns the response's end-to-end fields as a new header map
// (hop-by-hop fields and those named in Connection left out).
func (resp *upResponse) header() http.Header {
	h := make(http.Header, len(resp.fields))
	for _, f := range resp.fields {
		if resp.endToEnd(f.name) {
			h[f.name] = append(h[f.name], f.value)
		}
	}
	return h
}

// endToEnd reports whether a response field is forwarded to the client.
func (resp *upResponse) endToEnd(name string) bool {
	return !isHopByHop(name) && (len(resp.connTokens) == 0 || !containsFold(resp.connTokens, name))
}

// hasToken reports whether a comma-separated header contains token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		if hasToken1(v, token) {
			return true
		}
	}
	return false
}

// hasToken1 reports whether one comma-separated value contains token.
func hasToken1(v, token string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}
