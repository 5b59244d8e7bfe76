package controlplane

import (
	"fmt"
	"runtime/debug"
	"strings"
	_ "unsafe" // for go:linkname

	"k8s.io/component-base/version"
)

// kube-apiserver reports the version stamped into k8s.io/component-base by
// the Kubernetes release build's -ldflags -X. Linked as a library the
// placeholder "v0.0.0-master" remains, which clients such as clusterctl
// reject. stampVersion sets the real version of the linked k8s.io/kubernetes
// module unless the binary was already built with -X.

//go:linkname gitVersion k8s.io/component-base/version.gitVersion
var gitVersion string

//go:linkname gitMajor k8s.io/component-base/version.gitMajor
var gitMajor string

//go:linkname gitMinor k8s.io/component-base/version.gitMinor
var gitMinor string

//go:linkname gitTreeState k8s.io/component-base/version.gitTreeState
var gitTreeState string

// fallbackKubernetesVersion is used when the binary carries no module
// information (the version pinned in go.mod).
const fallbackKubernetesVersion = "v1.36.3"

func kubernetesModuleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "k8s.io/kubernetes" {
				if d.Replace != nil && d.Replace.Version != "" {
					return d.Replace.Version
				}
				if d.Version != "" {
					return d.Version
				}
			}
		}
	}
	return fallbackKubernetesVersion
}

func stampVersion() error {
	if !strings.HasPrefix(gitVersion, "v0.0.0-master") {
		return nil
	}
	v := kubernetesModuleVersion()
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("cannot parse Kubernetes version %q", v)
	}
	gitVersion, gitMajor, gitMinor, gitTreeState = v, parts[0], parts[1], "clean"
	return version.SetDynamicVersion(v)
}
