package controlplane

import (
	"strings"
	"testing"

	"k8s.io/component-base/version"
)

func TestStampVersion(t *testing.T) {
	if err := stampVersion(); err != nil {
		t.Fatal(err)
	}
	v := version.Get()
	if !strings.HasPrefix(v.GitVersion, "v1.") || v.Major != "1" || v.Minor == "" {
		t.Fatalf("version after stamping: %+v", v)
	}
	t.Logf("embedded kube-apiserver reports %s", v.GitVersion)
}
