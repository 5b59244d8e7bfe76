// Package templates embeds kiln's default templates (workflow templates and
// any other files other packages add under this directory) into the binary.
package templates

import "embed"

// FS holds every template shipped with kiln, addressed by path relative to
// this directory, e.g. "workflows/ubuntu.yaml".
//
//go:embed workflows
var FS embed.FS
