package redfish

import "testing"

func FuzzParseBootPatch(f *testing.F) {
	f.Add([]byte(`{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI"}}`))
	f.Add([]byte(`{"Boot":{"BootSourceOverrideTarget":"Cd"}}`))
	f.Add([]byte(`{"Boot":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cur := BootOverride{TargetNone, EnabledDisabled, ModeLegacy}
		got, err := parseBootPatch(b, cur)
		if err != nil {
			if got != cur {
				t.Fatalf("a rejected patch changed the override: %+v", got)
			}
			return
		}
		if !contains(targets, got.Target) || !contains(enableds, got.Enabled) || !contains(modes, got.Mode) {
			t.Fatalf("accepted an invalid override %+v from %q", got, b)
		}
	})
}

func FuzzParseReset(f *testing.F) {
	f.Add([]byte(`{"ResetType":"On"}`))
	f.Add([]byte(`{"ResetType":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rt, err := parseReset(b)
		if err == nil {
			found := false
			for _, x := range ResetTypes {
				found = found || x == rt
			}
			if !found {
				t.Fatalf("accepted reset type %q", rt)
			}
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
