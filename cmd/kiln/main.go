// Command kiln turns racks of bare-metal servers into a Kubernetes cluster
// with an API gateway in front of it. All logic lives in pkg/; this is the
// thin entry point.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kiln-dev/kiln/pkg/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, cli.InitArgs(os.Args), os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
