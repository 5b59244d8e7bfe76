package router

import "strings"

// NormalizePath returns the path Kong's router matches against: unreserved
// percent-escapes decoded (others kept, upper-cased), "." and ".." segments
// resolved and repeated slashes merged. The query must already be removed.
// A path that is already normal is returned as is, without allocating.
func NormalizePath(p string) string {
	if p == "" {
		return "/"
	}
	if isNormal(p) {
		return p
	}
	return normalizeSlow(p)
}

func isNormal(p string) bool {
	if p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '%':
			return false
		case '/':
			if i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
				return false
			}
		}
	}
	return true
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func normalizeSlow(p string) string {
	// 1. percent-escapes.
	var b strings.Builder
	b.Grow(len(p) + 1)
	if p[0] != '/' {
		b.WriteByte('/')
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) {
			h, ok1 := unhex(p[i+1])
			l, ok2 := unhex(p[i+2])
			if ok1 && ok2 {
				d := h<<4 | l
				if isUnreserved(d) {
					b.WriteByte(d)
				} else {
					b.WriteByte('%')
					b.WriteByte(strings.ToUpper(p[i+1 : i+2])[0])
					b.WriteByte(strings.ToUpper(p[i+2 : i+3])[0])
				}
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	decoded := b.String()
	// 2. segments: merge slashes, resolve dot segments.
	segs := strings.Split(decoded[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "", ".":
			if last {
				trailing = true
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				trailing = true
			}
		default:
			out = append(out, s)
		}
	}
	res := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		res += "/"
	}
	return res
}

// EscapesRoot reports whether resolving p's dot segments ("..", also
// spelled %2e%2e) climbs above the root, as "/a/../../b" does. nginx, and so
// Kong, refuses such a request with 400 rather than clamping it to the root.
func EscapesRoot(p string) bool {
	if p == "" || isNormal(p) {
		return false
	}
	depth := 0
	for seg := range strings.SplitSeq(p, "/") {
		switch dotSegment(seg) {
		case 1:
		case 2:
			if depth == 0 {
				return true
			}
			depth--
		default:
			if seg != "" {
				depth++
			}
		}
	}
	return false
}

// dotSegment is 1 for a "." segment, 2 for "..", each dot possibly
// percent-encoded (%2e or %2E), and 0 otherwise.
func dotSegment(seg string) int {
	n := 0
	for len(seg) > 0 {
		switch {
		case seg[0] == '.':
			seg = seg[1:]
		case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && (seg[2] == 'e' || seg[2] == 'E'):
			seg = seg[3:]
		default:
			return 0
		}
		n++
	}
	if n > 2 {
		return 0
	}
	return n
}

// JoinV0 composes the upstream path the way Kong's path_handling "v0" does.
// servicePath is the service's path ("" means none), prefix the part of the
// normalized request path the route matched (for a regex path, the matched
// text), and reqPath the normalized request path.
func JoinV0(servicePath string, stripPath bool, prefix, reqPath string) string {
	s := servicePath
	if s == "" {
		s = "/"
	}
	sSlash := s[len(s)-1] == '/'
	if !stripPath {
		if sSlash {
			if s == "/" {
				return reqPath
			}
			return s + reqPath[1:]
		}
		if reqPath == "/" {
			return s
		}
		return s + reqPath
	}
	post := dropDotPrefix(reqPath[len(prefix):])
	if sSlash {
		switch {
		case post == "":
			if s == "/" {
				return "/"
			}
			if strings.HasSuffix(reqPath, "/") {
				return s
			}
			return s[:len(s)-1]
		case post[0] == '/':
			if s == "/" {
				return post
			}
			return s[:len(s)-1] + post
		default:
			return s + post
		}
	}
	switch {
	case post == "":
		if len(reqPath) > 1 && reqPath[len(reqPath)-1] == '/' {
			return s + "/"
		}
		return s
	case post[0] == '/':
		return s + post
	default:
		return s + "/" + post
	}
}

// JoinV1 composes the upstream path the way Kong's deprecated
// path_handling "v1" does: the service path and the rest are concatenated,
// collapsing the doubled slash, with no slash inserted.
func JoinV1(servicePath string, stripPath bool, prefix, reqPath string) string {
	s := servicePath
	if s == "" {
		s = "/"
	}
	rest := reqPath
	if stripPath {
		rest = reqPath[len(prefix):]
	}
	if strings.HasSuffix(s, "/") && strings.HasPrefix(rest, "/") {
		return s + rest[1:]
	}
	return s + rest
}

func dropDotPrefix(post string) string {
	for {
		switch {
		case strings.HasPrefix(post, "./"):
			post = post[2:]
		case strings.HasPrefix(post, "../"):
			post = post[3:]
		case post == "." || post == "..":
			return ""
		default:
			return post
		}
	}
}
