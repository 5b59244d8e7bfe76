// Package confighash computes Kong's hybrid-mode configuration hash
// (kong/clustering/config_helper.lua): the digest a control plane sends with
// every reconfigure frame, a data plane reports in its pings and /status
// shows as configuration_hash. Values are JSON-shaped (nil, string, float64
// or another number type, bool, []any, map[string]any) as encoding/json
// decodes them.
//
// Each value is rendered into a canonical string — null as "/null/", strings
// and numbers as Lua's tostring prints them, booleans as true/false, empty
// tables as "{}", arrays of up to five elements joined with ";", longer
// arrays with ";" after every element, maps as "key:value;" in sorted key
// order — and hashed with md5. Whenever the buffer grows beyond one million
// bytes it is replaced by its raw md5 digest before the next value is
// written, exactly where Kong does it, so large configurations hash the same.
package confighash

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Empty is the hash of an absent (or empty) configuration, Kong's
// DECLARATIVE_EMPTY_CONFIG_HASH.
const Empty = "00000000000000000000000000000000"

// rollLimit is the buffer length beyond which the buffer is replaced by its
// md5 digest.
const rollLimit = 1000000

// Sections are the collections hashed separately, in the order their hashes
// are concatenated; the rest of the table is hashed last.
var Sections = []string{"routes", "services", "plugins", "upstreams", "targets"}

// Hashes are the per-section hashes of a reconfigure frame, keyed by
// "config" (the whole) and each of Sections.
type Hashes map[string]string

// Value returns the hash of one JSON value; nil (an absent value) gives
// Empty. It fails only on a type JSON cannot carry.
func Value(v any) (string, error) {
	if v == nil {
		return Empty, nil
	}
	var h hasher
	if err := h.write(v); err != nil {
		return "", err
	}
	sum := md5.Sum(h.buf)
	return hex.EncodeToString(sum[:]), nil
}

// Config returns the configuration hash of a reconfigure frame's
// config_table and the per-section hashes. A section that is absent hashes
// to Empty. A table that is not a map is hashed as a single value.
func Config(table any) (string, Hashes, error) {
	m, ok := table.(map[string]any)
	if !ok {
		h, err := Value(table)
		return h, Hashes{"config": h}, err
	}
	hashes := Hashes{}
	rest := make(map[string]any, len(m))
	for k, v := range m {
		rest[k] = v
	}
	concat := make([]byte, 0, 32*(len(Sections)+1))
	for _, s := range Sections {
		h, err := Value(m[s])
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", s, err)
		}
		hashes[s] = h
		concat = append(concat, h...)
		delete(rest, s)
	}
	h, err := Value(rest)
	if err != nil {
		return "", nil, err
	}
	concat = append(concat, h...)
	sum := md5.Sum(concat)
	hashes["config"] = hex.EncodeToString(sum[:])
	return hashes["config"], hashes, nil
}

type hasher struct{ buf []byte }

func (h *hasher) write(v any) error {
	if len(h.buf) > rollLimit {
		sum := md5.Sum(h.buf)
		h.buf = append(h.buf[:0], sum[:]...)
	}
	switch t := v.(type) {
	case nil:
		h.buf = append(h.buf, "/null/"...)
	case string:
		h.buf = append(h.buf, t...)
	case bool:
		h.buf = strconv.AppendBool(h.buf, t)
	case float64:
		h.buf = append(h.buf, LuaNumber(t)...)
	case float32:
		h.buf = append(h.buf, LuaNumber(float64(t))...)
	case int:
		h.buf = append(h.buf, LuaNumber(float64(t))...)
	case int64:
		h.buf = append(h.buf, LuaNumber(float64(t))...)
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return fmt.Errorf("number %q: %w", t.String(), err)
		}
		h.buf = append(h.buf, LuaNumber(f)...)
	case []any:
		return h.array(t)
	case map[string]any:
		return h.object(t)
	default:
		return fmt.Errorf("cannot hash a %T (only JSON values are supported)", v)
	}
	return nil
}

func (h *hasher) array(a []any) error {
	if len(a) == 0 {
		h.buf = append(h.buf, "{}"...)
		return nil
	}
	for i, e := range a {
		if err := h.write(e); err != nil {
			return err
		}
		// Up to five elements are joined; longer arrays end every element.
		if len(a) > 5 || i < len(a)-1 {
			h.buf = append(h.buf, ';')
		}
	}
	return nil
}

func (h *hasher) object(m map[string]any) error {
	if len(m) == 0 {
		h.buf = append(h.buf, "{}"...)
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h.buf = append(h.buf, k...)
		h.buf = append(h.buf, ':')
		if err := h.write(m[k]); err != nil {
			return err
		}
		h.buf = append(h.buf, ';')
	}
	return nil
}

// LuaNumber formats a number as LuaJIT's tostring does ("%.14g"): integers
// without a fraction, at most 14 significant digits, C-style exponents.
func LuaNumber(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'g', 14, 64)
}
