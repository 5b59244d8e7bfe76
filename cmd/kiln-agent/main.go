// Command kiln-agent is the provisioning agent alone: the /init of kiln's
// in-memory OS. It behaves as `kiln agent` but leaves out the rest of kiln
// (the embedded Kubernetes control plane, Cluster API, the gateway), so the
// initramfs stays small. All logic lives in pkg/agent/agentcmd.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kiln-dev/kiln/pkg/agent/agentcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agentcmd.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
