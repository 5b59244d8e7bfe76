// Package kongcompat only pins go-kong, Kong's own Go client, at the version
// whose published integration tests `make test-compat` runs against kiln
// (see e2e/compatrun and docs/compatibility.md). It is a separate module so
// that go-kong's dependencies, and the mergo replace go-kong itself uses, do
// not enter kiln's module.
package kongcompat

import _ "github.com/kong/go-kong/kong" // the module whose tests run against kiln
