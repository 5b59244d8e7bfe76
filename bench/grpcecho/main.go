// Command grpcecho serves the gateway tests' gRPC echo service
// (kiln.test.Echo, package grpcecho) on an address, as the upstream of
// bench/bench-grpc.sh.
package main

import (
	"fmt"
	"net"
	"os"

	"github.com/kiln-dev/kiln/pkg/proxy/proxytest/grpcecho"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grpcecho ADDR (e.g. 127.0.0.1:19501)")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpcecho: %v\n", err)
		os.Exit(1)
	}
	if err := grpcecho.NewServer().Serve(ln); err != nil {
		fmt.Fprintf(os.Stderr, "grpcecho: %v\n", err)
		os.Exit(1)
	}
}
