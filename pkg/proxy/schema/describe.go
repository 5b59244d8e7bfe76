package schema

// Describe renders the schema the way Kong's GET /schemas/{entity} does:
// {"fields":[{"name":{"type":...,"default":...}}, ...]}. Clients such as decK
// read defaults from it.
func (s *Schema) Describe() map[string]any {
	out := map[string]any{"fields": describeFields(s.Fields)}
	if s.EndpointKey != "" {
		out["endpoint_key"] = s.EndpointKey
	}
	return out
}

// DescribeField renders a single field (used for a plugin's config record).
func DescribeField(f *Field) map[string]any { return describeField(f) }

func describeFields(fields []Field) []any {
	list := make([]any, 0, len(fields))
	for i := range fields {
		list = append(list, map[string]any{fields[i].Name: describeField(&fields[i])})
	}
	return list
}

func describeField(f *Field) map[string]any {
	d := map[string]any{"type": string(f.Type)}
	// Kong makes non-nullable records required; clients (go-kong, decK)
	// only fill a record's defaults when it is marked so.
	if f.Required || (f.Type == Record && !f.Nullable) {
		d["required"] = true
	}
	if f.Default != nil {
		d["default"] = DeepCopy(f.Default)
	}
	if len(f.OneOf) > 0 {
		d["one_of"] = f.OneOf
	}
	if f.Between != nil {
		d["between"] = []float64{f.Between.Min, f.Between.Max}
	}
	if f.Gt != nil {
		d["gt"] = *f.Gt
	}
	if f.UUID {
		d["uuid"] = true
	}
	if f.Unique {
		d["unique"] = true
	}
	if f.Auto {
		d["auto"] = true
	}
	if f.StartsWith != "" {
		d["starts_with"] = f.StartsWith
	}
	if f.LenMin > 0 {
		d["len_min"] = f.LenMin
	}
	if f.Reference != "" {
		d["reference"] = f.Reference
	}
	if f.Elements != nil {
		d["elements"] = describeField(f.Elements)
	}
	if f.Keys != nil {
		d["keys"] = describeField(f.Keys)
	}
	if f.Values != nil {
		d["values"] = describeField(f.Values)
	}
	if f.Type == Record {
		d["fields"] = describeFields(f.Fields)
		if len(f.Shorthands) > 0 {
			list := make([]any, 0, len(f.Shorthands))
			for _, sh := range f.Shorthands {
				path := make([]any, len(sh.Path))
				for i, p := range sh.Path {
					path[i] = p
				}
				list = append(list, map[string]any{sh.Name: map[string]any{
					"type": string(sh.Type),
					"deprecation": map[string]any{"message": sh.Message, "removal_in_version": "4.0",
						"replaced_with": []any{map[string]any{"path": path}}},
				}})
			}
			d["shorthand_fields"] = list
		}
	}
	return d
}
