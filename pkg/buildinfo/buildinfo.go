// Package buildinfo carries the version, commit and build date that the
// release build injects with -ldflags "-X".
package buildinfo

import "runtime/debug"

// These are set at link time by the Makefile and goreleaser; they are the only
// package-level variables in kiln and are never written at run time.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// Info describes one kiln build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
}

// Get returns the build information, falling back to the VCS stamp Go embeds
// when the binary was built without ldflags.
func Get() Info {
	info := Info{Version: version, Commit: commit, BuildDate: date}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.time":
				if info.BuildDate == "" {
					info.BuildDate = s.Value
				}
			}
		}
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	if info.BuildDate == "" {
		info.BuildDate = "unknown"
	}
	return info
}
