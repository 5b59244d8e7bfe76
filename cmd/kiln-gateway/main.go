// Command kiln-gateway is kiln's API gateway alone: the data plane's
// image. It behaves as `kiln gateway` (kiln-gateway run, kiln-gateway
// gen-cert) but leaves out the rest of kiln (provisioning, the embedded
// Kubernetes control plane, Cluster API), so the binary and the memory a
// gateway starts with stay small. All logic lives in pkg/proxy/gatewaycmd.
package main

import (
	"context"
	"os"

	"github.com/kiln-dev/kiln/pkg/proxy/gatewaycmd"
)

func main() {
	// gateway run stops on SIGINT/SIGTERM itself (and drains).
	code := gatewaycmd.Run(context.Background(), os.Args, gatewaycmd.Streams{Out: os.Stdout, Err: os.Stderr})
	os.Exit(code)
}
