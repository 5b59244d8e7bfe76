package workerapi

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Security configures transport security and authentication of the worker
// API. The zero value is plain-text gRPC without authentication, which is
// what Tinkerbell's agent uses by default (tinkerbell_tls=false).
type Security struct {
	// CertFile and KeyFile enable TLS on the server.
	CertFile, KeyFile string
	// ClientCAFile, with TLS, requires client certificates signed by this CA (mTLS).
	ClientCAFile string
	// Token, when set, is required as "authorization: Bearer <token>" metadata.
	Token string
}

// ServerOptions returns the gRPC server options for sec.
func (sec Security) ServerOptions() ([]grpc.ServerOption, error) {
	var opts []grpc.ServerOption
	if sec.CertFile != "" || sec.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(sec.CertFile, sec.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading worker API TLS certificate %s / key %s: %w", sec.CertFile, sec.KeyFile, err)
		}
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if sec.ClientCAFile != "" {
			pool, err := loadPool(sec.ClientCAFile)
			if err != nil {
				return nil, err
			}
			cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	} else if sec.ClientCAFile != "" {
		return nil, errors.New("--grpc-client-ca needs --grpc-tls-cert and --grpc-tls-key: client certificates only work over TLS")
	}
	if sec.Token != "" {
		check := tokenChecker(sec.Token)
		opts = append(opts,
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if err := check(ctx); err != nil {
					return nil, err
				}
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				if err := check(ss.Context()); err != nil {
					return err
				}
				return h(srv, ss)
			}))
	}
	return opts, nil
}

func tokenChecker(token string) func(context.Context) error {
	want := []byte("Bearer " + token)
	return func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		for _, got := range md.Get("authorization") {
			if subtle.ConstantTimeCompare([]byte(got), want) == 1 {
				return nil
			}
		}
		return status.Error(codes.Unauthenticated, "missing or wrong bearer token (set the agent's token to the server's --grpc-token)")
	}
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// ClientSecurity is the agent side of Security.
type ClientSecurity struct {
	// TLS dials with TLS (kernel arg tinkerbell_tls=true).
	TLS bool
	// InsecureSkipVerify skips server certificate checks (tinkerbell_insecure_tls=true).
	InsecureSkipVerify bool
	// CAFile verifies the server against this CA instead of the system pool.
	CAFile string
	// CertFile and KeyFile present a client certificate (mTLS).
	CertFile, KeyFile string
	// Token is sent as a bearer token on every call.
	Token string
}

// DialOptions returns the gRPC dial options for cs.
func (cs ClientSecurity) DialOptions() ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if cs.TLS {
		cfg := &tls.Config{InsecureSkipVerify: cs.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // operator's explicit choice (tinkerbell_insecure_tls)
		if cs.CAFile != "" {
			pool, err := loadPool(cs.CAFile)
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = pool
		}
		if cs.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cs.CertFile, cs.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("loading client certificate %s / key %s: %w", cs.CertFile, cs.KeyFile, err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		if cs.CertFile != "" || cs.CAFile != "" {
			return nil, errors.New("client certificates and CA files need TLS (tinkerbell_tls=true)")
		}
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if cs.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: cs.Token}))
	}
	return opts, nil
}

type bearer struct{ token string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false so a token also works on plain-text
// links inside a provisioning network; prefer TLS where possible.
func (b bearer) RequireTransportSecurity() bool { return false }
