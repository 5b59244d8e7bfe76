// Package templates embeds kiln's default templates (iPXE scripts, workflow
// templates, and any other files capabilities add under this directory) so
// the binary needs no files at run time.
package templates

import "embed"

// FS holds every template shipped with kiln, addressed by path relative to
// this directory, e.g. "ipxe/auto.ipxe.tmpl" or "workflows/ubuntu.yaml".
//
//go:embed ipxe workflows
var FS embed.FS
