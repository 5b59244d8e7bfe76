package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
)

// maxBody bounds Admin API request bodies (declarative documents included).
const maxBody = 32 << 20

var errBadJSON = plainError(http.StatusBadRequest, "Cannot parse JSON body")

// readBody decodes a JSON, form-urlencoded or multipart body into a
// JSON-shaped map; form values are converted to the schema's types.
func readBody(r *http.Request, k *entity.Kind) (map[string]any, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, plainError(http.StatusBadRequest, "could not read request body")
	}
	if len(raw) > maxBody {
		return nil, plainError(http.StatusRequestEntityTooLarge, "Payload too large")
	}
	return decodeBody(r.Header.Get("Content-Type"), raw, k)
}

func decodeBody(contentType string, raw []byte, k *entity.Kind) (map[string]any, error) {
	mt, params, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, plainError(http.StatusBadRequest, "Cannot parse form body")
		}
		return coerce(k, formToMap(vals)), nil
	case mt == "multipart/form-data":
		r := &http.Request{Header: http.Header{"Content-Type": {contentType}}, Body: io.NopCloser(bytes.NewReader(raw)), Method: http.MethodPost}
		_ = params
		if err := r.ParseMultipartForm(maxBody); err != nil {
			return nil, plainError(http.StatusBadRequest, "Cannot parse multipart body")
		}
		return coerce(k, formToMap(r.MultipartForm.Value)), nil
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return map[string]any{}, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, errBadJSON
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errBadJSON
	}
	return m, nil
}

func coerce(k *entity.Kind, m map[string]any) map[string]any {
	if k == nil {
		return m
	}
	out := k.Schema.Coerce(m)
	if k.Name == "plugins" {
		name, _ := out["name"].(string)
		if def := entity.Plugins[name]; def != nil {
			if cfg, ok := out["config"].(map[string]any); ok {
				wrapper := map[string]any{"config": cfg}
				out["config"] = pluginCoerce(def, wrapper)
			}
		}
	}
	return out
}

func pluginCoerce(def *entity.PluginDef, wrapper map[string]any) any {
	s := schemaOfField(def)
	return s.Coerce(wrapper)["config"]
}

// formToMap builds nested values from Kong-style form keys: "a.b=1",
// "paths[]=/x", "paths[1]=/x", and repeated keys as arrays.
func formToMap(vals map[string][]string) map[string]any {
	out := map[string]any{}
	for key, list := range vals {
		for _, v := range list {
			setPath(out, key, v, len(list) > 1)
		}
	}
	return out
}

func setPath(m map[string]any, key, value string, repeated bool) {
	var parts []string
	for _, dotted := range strings.Split(key, ".") {
		// a[b][c] → a, b, c; a[] keeps the empty index as "[]".
		for dotted != "" {
			i := strings.IndexByte(dotted, '[')
			if i < 0 {
				parts = append(parts, dotted)
				break
			}
			if i > 0 {
				parts = append(parts, dotted[:i])
			}
			j := strings.IndexByte(dotted[i:], ']')
			if j < 0 {
				parts = append(parts, dotted[i:])
				break
			}
			idx := dotted[i+1 : i+j]
			if idx == "" {
				parts = append(parts, "[]")
			} else {
				parts = append(parts, idx)
			}
			dotted = dotted[i+j+1:]
		}
	}
	if len(parts) == 0 {
		return
	}
	cur := m
	for i, p := range parts {
		last := i == len(parts)-1
		if last || (i == len(parts)-2 && parts[i+1] == "[]") {
			arrayMode := !last || repeated
			if arrayMode {
				list, _ := cur[p].([]any)
				cur[p] = append(list, value)
			} else {
				cur[p] = value
			}
			return
		}
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
}
