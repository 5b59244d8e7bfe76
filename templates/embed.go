// Package templates embeds kiln's text templates (iPXE scripts, and more as
// capabilities add them) so the binary needs no files at run time.
package templates

import "embed"

// FS holds every template directory. Paths are relative to this directory,
// e.g. "ipxe/auto.ipxe.tmpl".
//
//go:embed ipxe
var FS embed.FS
