// Package grpcecho is a gRPC service for the gateway's tests and
// benchmarks, defined without generated code (its messages are protobuf's
// StringValue): kiln.test.Echo/Say answers "hello <name>", followed by the
// request metadata named in x-echo (the name "fail" gets NotFound), with a
// header and a trailer of its own; kiln.test.Echo/Chat echoes every
// message of a bidirectional stream as it arrives.
package grpcecho

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Paths of the service's methods.
const (
	SayPath  = "/kiln.test.Echo/Say"
	ChatPath = "/kiln.test.Echo/Chat"
)

// NewServer returns a gRPC server (with opts) serving the echo service.
func NewServer(opts ...grpc.ServerOption) *grpc.Server {
	srv := grpc.NewServer(opts...)
	srv.RegisterService(&service, struct{}{})
	return srv
}

var service = grpc.ServiceDesc{
	ServiceName: "kiln.test.Echo",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Say", Handler: say}},
	Streams:     []grpc.StreamDesc{{StreamName: "Chat", ServerStreams: true, ClientStreams: true, Handler: chat}},
}

func say(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	if in.Value == "fail" {
		return nil, status.Error(codes.NotFound, "no greeting for fail")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-upstream-header", "h"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-upstream-trailer", "t"))
	out := "hello " + in.Value
	for _, k := range md.Get("x-echo") {
		out += fmt.Sprintf(" %s=%s", k, strings.Join(md.Get(k), ","))
	}
	return wrapperspb.String(out), nil
}

func chat(_ any, stream grpc.ServerStream) error {
	for {
		in := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(in); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.SendMsg(wrapperspb.String("echo " + in.Value)); err != nil {
			return err
		}
	}
}
