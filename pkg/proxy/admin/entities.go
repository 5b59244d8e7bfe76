package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/pkg/proxy/entity"
	"github.com/kiln-dev/kiln/pkg/proxy/schema"
	"github.com/kiln-dev/kiln/pkg/proxy/store"
)

func strconvI(n int64) string { return strconv.FormatInt(n, 10) }

// parent is the entity a nested endpoint lives under.
type parent struct {
	kind  *entity.Kind
	rec   map[string]any
	field string // child's foreign-key field pointing at the parent
	path  string // URL prefix, e.g. /services/foo
}

func (p *parent) id() string { return p.rec["id"].(string) }

func kindByAdminPath(p string) *entity.Kind {
	for _, k := range entity.Kinds {
		if k.AdminPath == p {
			return k
		}
	}
	return nil
}

// childKind finds the collection named name under parent kind pk.
func childKind(pk *entity.Kind, name string) (*entity.Kind, string) {
	for _, k := range entity.Kinds {
		for _, fk := range k.Foreign {
			if fk.Ref != pk.Name {
				continue
			}
			path := k.NestedPath
			if path == "" {
				path = k.AdminPath
			}
			if path == "" {
				path = k.Name
			}
			if path == name {
				return k, fk.Field
			}
		}
	}
	return nil, ""
}

func (s *Server) entities(r *http.Request, segs []string) (int, any, error) {
	ctx := r.Context()
	k := kindByAdminPath(segs[0])
	if k == nil {
		return 0, nil, errNotFound
	}
	switch len(segs) {
	case 1:
		return s.collection(r, k, nil)
	case 2:
		return s.single(r, k, segs[1], nil)
	}
	rec, err := s.find(ctx, k, segs[1], nil)
	if err != nil {
		return 0, nil, err
	}
	if rec == nil {
		return 0, nil, errNotFound
	}
	if k.Name == "upstreams" && segs[2] == "health" && len(segs) == 3 {
		return s.upstreamHealth(r, rec)
	}
	child, field := childKind(k, segs[2])
	if child == nil {
		// A to-one relation: /routes/{r}/service, /key-auths/{k}/consumer.
		if len(segs) == 3 {
			for _, fk := range k.Foreign {
				if fk.Field == segs[2] {
					return s.toOne(r, rec, fk)
				}
			}
		}
		return 0, nil, errNotFound
	}
	par := &parent{kind: k, rec: rec, field: field, path: "/" + segs[0] + "/" + url.PathEscape(segs[1])}
	switch {
	case len(segs) == 3:
		return s.collection(r, child, par)
	case len(segs) == 4 && child.Name == "targets" && segs[3] == "all":
		if r.Method != http.MethodGet {
			return 0, nil, errMethodNotAllowed
		}
		return s.list(r, child, par)
	case len(segs) == 4:
		return s.single(r, child, segs[3], par)
	case len(segs) == 5 && child.Name == "targets" && (segs[4] == "healthy" || segs[4] == "unhealthy"):
		return s.setTargetHealth(r, rec, segs[3], segs[4] == "healthy")
	}
	return 0, nil, errNotFound
}

// toOne serves /routes/{r}/service and the like: GET, PATCH and PUT act on
// the referenced entity; DELETE is not allowed (Kong answers 405 too).
func (s *Server) toOne(r *http.Request, rec map[string]any, fk entity.ForeignKey) (int, any, error) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodPut:
	default:
		return 0, nil, errMethodNotAllowed
	}
	id := entity.FKID(rec, fk.Field)
	if id == "" {
		return 0, nil, errNotFound
	}
	return s.single(r, entity.KindByName(fk.Ref), id, nil)
}

// find resolves an entity by id or endpoint key; nil when absent.
func (s *Server) find(ctx context.Context, k *entity.Kind, key string, par *parent) (map[string]any, error) {
	var (
		rec map[string]any
		err error
	)
	switch {
	case schema.IsUUID(key):
		rec, err = s.st.Get(ctx, k.Name, strings.ToLower(key))
	case k.Name == "targets":
		if par == nil {
			return nil, nil
		}
		rec, err = s.st.GetByUnique(ctx, k.Name, "upstream,target", par.id()+":"+entity.NormalizeTarget(key))
	case k.Name == "certificates":
		var sni map[string]any
		sni, err = s.st.GetByUnique(ctx, "snis", "name", key)
		if err == nil {
			rec, err = s.st.Get(ctx, k.Name, entity.FKID(sni, "certificate"))
		}
	case k.Name == "acls" && par != nil:
		rec, err = s.st.GetByUnique(ctx, k.Name, "consumer,group", par.id()+":"+key)
	case k.Schema.EndpointKey != "":
		rec, err = s.st.GetByUnique(ctx, k.Name, k.Schema.EndpointKey, key)
	default:
		return nil, nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if par != nil && entity.FKID(rec, par.field) != par.id() {
		return nil, nil
	}
	if s.expired(k, rec) {
		return nil, nil
	}
	return rec, nil
}

// expired hides key-auth credentials whose ttl has run out, as Kong's
// database TTL does.
func (s *Server) expired(k *entity.Kind, rec map[string]any) bool {
	if k.Name != "keyauth_credentials" {
		return false
	}
	ttl, ok := rec["ttl"].(float64)
	if !ok {
		return false
	}
	n := int(ttl)
	created, _ := rec["created_at"].(float64)
	left, ok := entity.KeyAuthRemainingTTL(created, &n, s.now())
	return ok && left <= 0
}

func (s *Server) collection(r *http.Request, k *entity.Kind, par *parent) (int, any, error) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return s.list(r, k, par)
	case http.MethodPost:
		if s.dbless {
			return 0, nil, unsupported("create", k)
		}
		in, err := readBody(r, k)
		if err != nil {
			return 0, nil, err
		}
		if par != nil {
			in[par.field] = map[string]any{"id": par.id()}
		}
		rec, err := s.save(r.Context(), k, in, nil, "")
		if err != nil {
			return 0, nil, err
		}
		out, err := s.format(r.Context(), k, rec)
		return http.StatusCreated, out, err
	}
	return 0, nil, errMethodNotAllowed
}

func unsupported(verb string, k *entity.Kind) *apiError {
	return &apiError{status: http.StatusMethodNotAllowed, body: map[string]any{
		"code": 12, "name": "operation unsupported",
		"message": fmt.Sprintf("cannot %s '%s' entities when not using a database", verb, k.Name)}}
}

// pageSize reads a collection's ?size= (default 100, at most 1000).
func pageSize(qv url.Values) (int, error) {
	v := qv.Get("size")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, &apiError{status: http.StatusBadRequest, body: map[string]any{
			"code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000"}}
	}
	return n, nil
}

func (s *Server) list(r *http.Request, k *entity.Kind, par *parent) (int, any, error) {
	ctx := r.Context()
	qv := r.URL.Query()
	size, err := pageSize(qv)
	if err != nil {
		return 0, nil, err
	}
	q := store.Query{Size: size, Offset: qv.Get("offset")}
	if tags := qv.Get("tags"); tags != "" {
		hasAnd, hasOr := strings.Contains(tags, ","), strings.Contains(tags, "/")
		if hasAnd && hasOr {
			return 0, nil, &apiError{status: http.StatusBadRequest, body: map[string]any{
				"code": 11, "name": "invalid options", "message": "invalid option (tags: invalid filter syntax)",
				"options": map[string]any{"tags": "invalid filter syntax"}}}
		}
		sep := ","
		if hasOr {
			sep, q.TagsOr = "/", true
		}
		q.Tags = strings.Split(tags, sep)
	}
	if par != nil {
		q.ForeignField, q.ForeignID = par.field, par.id()
	}
	var page store.Page
	if k.Name == "consumers" && qv.Get("custom_id") != "" {
		rec, err := s.st.GetByUnique(ctx, k.Name, "custom_id", qv.Get("custom_id"))
		if err == nil {
			page.Data = append(page.Data, rec)
		} else if !errors.Is(err, store.ErrNotFound) {
			return 0, nil, err
		}
	} else {
		var err error
		if page, err = s.st.List(ctx, k.Name, q); err != nil {
			return 0, nil, err
		}
	}
	data := make([]any, 0, len(page.Data))
	for _, rec := range page.Data {
		if s.expired(k, rec) {
			continue
		}
		out, err := s.format(ctx, k, rec)
		if err != nil {
			return 0, nil, err
		}
		data = append(data, out)
	}
	body := map[string]any{"data": data, "next": nil}
	if page.Offset != "" {
		base := r.URL.Path
		next := url.Values{"offset": {page.Offset}}
		if qv.Get("size") != "" {
			next.Set("size", qv.Get("size"))
		}
		if qv.Get("tags") != "" {
			next.Set("tags", qv.Get("tags"))
		}
		body["next"] = base + "?" + next.Encode()
		body["offset"] = page.Offset
	}
	return http.StatusOK, body, nil
}

func (s *Server) single(r *http.Request, k *entity.Kind, key string, par *parent) (int, any, error) {
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		rec, err := s.find(ctx, k, key, par)
		if err != nil {
			return 0, nil, err
		}
		if rec == nil {
			return 0, nil, errNotFound
		}
		out, err := s.format(ctx, k, rec)
		return http.StatusOK, out, err
	case http.MethodDelete:
		if s.dbless {
			return 0, nil, unsupported("remove", k)
		}
		rec, err := s.find(ctx, k, key, par)
		if err != nil {
			return 0, nil, err
		}
		if rec != nil {
			if err := s.st.Delete(ctx, k.Name, rec["id"].(string)); err != nil {
				return 0, nil, err
			}
		}
		return http.StatusNoContent, nil, nil
	case http.MethodPatch:
		if s.dbless {
			return 0, nil, unsupported("update", k)
		}
		rec, err := s.find(ctx, k, key, par)
		if err != nil {
			return 0, nil, err
		}
		if rec == nil {
			return 0, nil, errNotFound
		}
		in, err := readBody(r, k)
		if err != nil {
			return 0, nil, err
		}
		if par != nil {
			in[par.field] = map[string]any{"id": par.id()}
		}
		saved, err := s.save(ctx, k, in, rec, rec["id"].(string))
		if err != nil {
			return 0, nil, err
		}
		out, err := s.format(ctx, k, saved)
		return http.StatusOK, out, err
	case http.MethodPut:
		if s.dbless {
			return 0, nil, unsupported("create or update", k)
		}
		in, err := readBody(r, k)
		if err != nil {
			return 0, nil, err
		}
		if par != nil {
			in[par.field] = map[string]any{"id": par.id()}
		}
		existing, err := s.find(ctx, k, key, par)
		if err != nil {
			return 0, nil, err
		}
		id := ""
		switch {
		case existing != nil:
			id = existing["id"].(string)
		case schema.IsUUID(key):
			id = strings.ToLower(key)
		}
		if !schema.IsUUID(key) {
			// PUT by name: the URL's key is the entity's key.
			if ep := k.Schema.EndpointKey; ep != "" {
				in[ep] = key
			}
		}
		saved, err := s.upsert(ctx, k, in, existing, id)
		if err != nil {
			return 0, nil, err
		}
		out, err := s.format(ctx, k, saved)
		return http.StatusOK, out, err
	}
	return 0, nil, errMethodNotAllowed
}

// upsert fully replaces existing (keeping id and created_at) or creates.
func (s *Server) upsert(ctx context.Context, k *entity.Kind, in, existing map[string]any, id string) (map[string]any, error) {
	if existing == nil {
		return s.save(ctx, k, in, nil, id)
	}
	in["created_at"] = existing["created_at"]
	return s.save(ctx, k, in, map[string]any{"id": id, "created_at": existing["created_at"], "__replace": true}, id)
}

// save validates and stores an entity. existing is the stored record for a
// PATCH (merged with in) or a PUT replacement marker; id is the id to use.
func (s *Server) save(ctx context.Context, k *entity.Kind, in, existing map[string]any, id string) (map[string]any, error) {
	if err := s.resolveForeign(ctx, k, in); err != nil {
		return nil, err
	}
	tr, terrs := entity.Transform(k, in)
	if terrs != nil {
		return nil, terrs
	}
	replace := existing != nil && existing["__replace"] == true
	if k.Name == "basicauth_credentials" {
		if pw, ok := tr["password"].(string); ok {
			consumer := entity.FKID(tr, "consumer")
			if consumer == "" && existing != nil {
				consumer = entity.FKID(existing, "consumer")
			}
			tr["password"] = entity.HashBasicAuthPassword(pw, consumer)
		}
	}
	var snis []any
	hasSNIs := false
	if k.Name == "certificates" {
		if v, ok := tr["snis"]; ok {
			hasSNIs = true
			snis, _ = v.([]any)
		}
	}
	rec := tr
	if existing != nil && !replace {
		rec = merge(existing, tr)
	}
	now := s.now()
	if id == "" {
		if v, ok := rec["id"].(string); ok && schema.IsUUID(v) {
			id = strings.ToLower(v)
		} else {
			id = entity.NewID()
		}
	}
	rec["id"] = id
	created := rec["created_at"]
	if existing != nil {
		created = existing["created_at"]
	}
	if k.Name == "targets" {
		ts := float64(now.UnixMilli()) / 1000
		if created == nil || existing == nil {
			created = ts
		}
		rec["created_at"], rec["updated_at"] = created, ts
	} else {
		if existing == nil {
			created = float64(now.Unix())
		}
		rec["created_at"] = created
		if k.Schema.Field("updated_at") != nil {
			rec["updated_at"] = float64(now.Unix())
		}
	}
	if k.Name == "certificates" {
		rec["snis"] = nil
	}
	out, errs := entity.Validate(k, rec)
	if errs != nil {
		return nil, errs
	}
	if hasSNIs {
		if err := s.checkSNIs(ctx, id, snis); err != nil {
			return nil, err
		}
	}
	var err error
	if existing == nil {
		err = s.st.Insert(ctx, k.Name, out)
	} else {
		err = s.st.Update(ctx, k.Name, out)
		if errors.Is(err, store.ErrNotFound) && replace {
			err = s.st.Insert(ctx, k.Name, out)
		}
	}
	if err != nil {
		return nil, err
	}
	if hasSNIs {
		if err := s.syncSNIs(ctx, id, snis); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// merge overlays a PATCH onto a stored record; records (plugin config,
// healthchecks) merge recursively as in Kong, everything else is replaced.
func merge(base, patch map[string]any) map[string]any {
	out := schema.DeepCopy(base).(map[string]any)
	for k, v := range patch {
		if pm, ok := v.(map[string]any); ok {
			if bm, ok := out[k].(map[string]any); ok && (k == "config" || k == "healthchecks" || isRecordish(bm)) {
				out[k] = merge(bm, pm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func isRecordish(m map[string]any) bool {
	for _, k := range []string{"active", "passive", "healthy", "unhealthy"} {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

// resolveForeign turns foreign keys given by name ({"service":{"name":"x"}}
// or a plain string) into {"id": ...}.
func (s *Server) resolveForeign(ctx context.Context, k *entity.Kind, in map[string]any) error {
	for _, fk := range k.Foreign {
		v, ok := in[fk.Field]
		if !ok || v == nil {
			continue
		}
		ref := entity.KindByName(fk.Ref)
		var key string
		switch t := v.(type) {
		case string:
			key = t
		case map[string]any:
			if id, ok := t["id"].(string); ok {
				in[fk.Field] = map[string]any{"id": strings.ToLower(id)}
				continue
			}
			if ep := ref.Schema.EndpointKey; ep != "" {
				key, _ = t[ep].(string)
			}
			if key == "" {
				continue // let the schema report it
			}
		default:
			continue
		}
		rec, err := s.find(ctx, ref, key, nil)
		if err != nil {
			return err
		}
		if rec == nil {
			if schema.IsUUID(key) {
				in[fk.Field] = map[string]any{"id": strings.ToLower(key)}
				continue
			}
			return &apiError{status: http.StatusBadRequest, body: map[string]any{
				"code": 4, "name": "foreign key violation",
				"message": fmt.Sprintf("the foreign key '{%s=%q}' does not reference an existing '%s' entity.", ref.Schema.EndpointKey, key, ref.Name),
				"fields":  map[string]any{fk.Field: map[string]any{ref.Schema.EndpointKey: key}}}}
		}
		in[fk.Field] = map[string]any{"id": rec["id"]}
	}
	return nil
}

func (s *Server) checkSNIs(ctx context.Context, certID string, names []any) error {
	for _, n := range names {
		name, _ := n.(string)
		sni, err := s.st.GetByUnique(ctx, "snis", "name", name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if entity.FKID(sni, "certificate") != certID {
			return &store.UniqueError{Kind: "snis", Fields: map[string]any{"snis": name}}
		}
	}
	return nil
}

// syncSNIs makes the certificate's SNI rows equal to names (Kong's "snis"
// shorthand on certificates).
func (s *Server) syncSNIs(ctx context.Context, certID string, names []any) error {
	want := map[string]bool{}
	for _, n := range names {
		if name, ok := n.(string); ok {
			want[name] = true
		}
	}
	page, err := s.st.List(ctx, "snis", store.Query{Size: 1000, ForeignField: "certificate", ForeignID: certID})
	if err != nil {
		return err
	}
	for _, sni := range page.Data {
		name := sni["name"].(string)
		if want[name] {
			delete(want, name)
			continue
		}
		if err := s.st.Delete(ctx, "snis", sni["id"].(string)); err != nil {
			return err
		}
	}
	now := float64(s.now().Unix())
	for _, n := range names {
		name, _ := n.(string)
		if !want[name] {
			continue
		}
		rec, errs := entity.Validate(entity.KindByName("snis"), map[string]any{
			"id": entity.NewID(), "name": name, "certificate": map[string]any{"id": certID}, "created_at": now, "updated_at": now})
		if errs != nil {
			return errs
		}
		if err := s.st.Insert(ctx, "snis", rec); err != nil {
			return err
		}
	}
	return nil
}

// format prepares a stored record for a response.
func (s *Server) format(ctx context.Context, k *entity.Kind, rec map[string]any) (map[string]any, error) {
	if k.Name == "keyauth_credentials" {
		if ttl, ok := rec["ttl"].(float64); ok {
			n := int(ttl)
			created, _ := rec["created_at"].(float64)
			if left, ok := entity.KeyAuthRemainingTTL(created, &n, s.now()); ok {
				out := schema.DeepCopy(rec).(map[string]any)
				out["ttl"] = float64(max(left, 0))
				return out, nil
			}
		}
		return rec, nil
	}
	if k.Name != "certificates" {
		return rec, nil
	}
	out := schema.DeepCopy(rec).(map[string]any)
	page, err := s.st.List(ctx, "snis", store.Query{Size: 1000, ForeignField: "certificate", ForeignID: rec["id"].(string)})
	if err != nil {
		return nil, err
	}
	names := make([]any, 0, len(page.Data))
	for _, sni := range page.Data {
		names = append(names, sni["name"])
	}
	out["snis"] = names
	return out, nil
}

func (s *Server) upstreamHealth(r *http.Request, up map[string]any) (int, any, error) {
	if r.Method != http.MethodGet {
		return 0, nil, errMethodNotAllowed
	}
	upID := up["id"].(string)
	var health map[string]string
	balancer := "HEALTHCHECKS_OFF"
	if s.opt.Health != nil {
		health, balancer = s.opt.Health.UpstreamHealth(upID)
	}
	if r.URL.Query().Get("balancer_health") != "" {
		return http.StatusOK, map[string]any{"data": map[string]any{"health": balancer, "id": upID}, "next": nil}, nil
	}
	page, err := s.st.List(r.Context(), "targets", store.Query{Size: 1000, ForeignField: "upstream", ForeignID: upID})
	if err != nil {
		return 0, nil, err
	}
	data := make([]any, 0, len(page.Data))
	for _, t := range page.Data {
		h := health[t["id"].(string)]
		if h == "" {
			h = "HEALTHCHECKS_OFF"
		}
		t["health"] = h
		data = append(data, t)
	}
	return http.StatusOK, map[string]any{"data": data, "next": nil, "node_id": s.opt.NodeID}, nil
}

func (s *Server) setTargetHealth(r *http.Request, up map[string]any, key string, healthy bool) (int, any, error) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		return 0, nil, errMethodNotAllowed
	}
	par := &parent{kind: entity.KindByName("upstreams"), rec: up, field: "upstream"}
	t, err := s.find(r.Context(), entity.KindByName("targets"), key, par)
	if err != nil {
		return 0, nil, err
	}
	if t == nil {
		return 0, nil, errNotFound
	}
	if s.opt.Health == nil {
		return 0, nil, plainError(http.StatusBadRequest, "health checks are not available on this node")
	}
	if err := s.opt.Health.SetTargetHealth(up["id"].(string), t["target"].(string), healthy); err != nil {
		return 0, nil, plainError(http.StatusBadRequest, err.Error())
	}
	return http.StatusNoContent, nil, nil
}
