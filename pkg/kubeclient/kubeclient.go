// Package kubeclient connects to the Kubernetes API a kubeconfig names,
// with kiln's kinds (Tinkerbell, Cluster API, EKS Anywhere) registered.
package kubeclient

import (
	"context"
	"fmt"
	"log/slog"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kiln-dev/kiln/pkg/crds"
)

// Options tunes a client. QPS and Burst bound its request rate (client-go's
// 5 per second, bursts of 10, when QPS is zero).
type Options struct {
	QPS   float32
	Burst int
}

// New returns a controller-runtime client for kubeconfig. API server
// warnings (deprecations, schema notes) are logged at debug level instead
// of printed.
func New(kubeconfig string, o Options) (client.WithWatch, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s: %w", kubeconfig, err)
	}
	rc.WarningHandlerWithContext = apiWarnings{}
	if o.QPS > 0 {
		rc.QPS, rc.Burst = o.QPS, o.Burst
	}
	s, err := crds.Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(rc, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("connecting to the Kubernetes API of %s: %w", kubeconfig, err)
	}
	return c, nil
}

// apiWarnings logs API server warnings at debug level.
type apiWarnings struct{}

func (apiWarnings) HandleWarningHeaderWithContext(ctx context.Context, _ int, _ string, text string) {
	slog.DebugContext(ctx, "Kubernetes API warning", "warning", text)
}
