// Package kube is the workflow store over tinkerbell.org/v1alpha1 Workflow
// objects in a Kubernetes API (kiln's bootstrap cluster or any cluster with
// the Tinkerbell CRDs). Spec and status follow Tinkerbell's controller, so
// `kubectl get workflows` shows kiln's provisioning like Tinkerbell's; what
// the Tinkerbell status has no field for rides in one status condition, so
// every Update is a single optimistic-concurrency status write.
package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	tinkv1 "github.com/tinkerbell/tink/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kiln-dev/kiln/pkg/kubeclient"
	"github.com/kiln-dev/kiln/pkg/workflow"
	"github.com/kiln-dev/kiln/pkg/workflow/store"
)

// Store keeps workflows as Workflow objects in one namespace.
type Store struct {
	c         client.Client
	namespace string
}

var _ store.Store = (*Store)(nil)

// conflictBackoff retries an Update that lost a race for the object's
// resourceVersion: 20 attempts over about 6 s (up to twice that with jitter),
// far more than client-go's DefaultRetry, because the worker API's timeout
// sweep and the agents' reports race on the same objects. No Cap: reaching
// wait.Backoff's cap ends the retries.
var conflictBackoff = wait.Backoff{Steps: 20, Duration: 10 * time.Millisecond, Factor: 1.3, Jitter: 1}

// Open connects to the Kubernetes API of kubeconfig and returns a store
// over namespace (see New). Every agent poll and report is an API request, so
// the client allows 50 requests per second (bursts of 100) instead of
// client-go's default of 5.
func Open(ctx context.Context, kubeconfig, namespace string) (*Store, error) {
	c, err := kubeclient.New(kubeconfig, kubeclient.Options{QPS: 50, Burst: 100})
	if err != nil {
		return nil, err
	}
	return New(ctx, c, namespace)
}

// New returns a store over the Workflow objects in namespace (default
// eksa-system), creating the namespace if it is missing. It fails with an
// operator-facing error when the API server does not serve the Tinkerbell
// Workflow kind.
func New(ctx context.Context, c client.Client, namespace string) (*Store, error) {
	if namespace == "" {
		namespace = workflow.DefaultNamespace
	}
	s := &Store{c: c, namespace: namespace}
	var probe tinkv1.WorkflowList
	if err := c.List(ctx, &probe, client.InNamespace(namespace), client.Limit(1)); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("the Kubernetes API does not serve tinkerbell.org/v1alpha1 Workflow objects: run `kiln bootstrap create` or install the Tinkerbell CRDs (%w)", err)
		}
		return nil, fmt.Errorf("listing Workflow objects in namespace %s: %w", namespace, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsForbidden(err) {
		return nil, fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	return s, nil
}

// Namespace is where the store keeps and lists workflows.
func (s *Store) Namespace() string { return s.namespace }

// Close implements store.Store; the client needs no closing.
func (s *Store) Close() error { return nil }

func splitID(id string) (namespace, name string, err error) {
	namespace, name, ok := strings.Cut(id, "/")
	if !ok || namespace == "" || name == "" {
		return "", "", fmt.Errorf("%w: %q is not a <namespace>/<name> workflow id", store.ErrNotFound, id)
	}
	return namespace, name, nil
}

// get reads one Workflow object; ErrNotFound if absent.
func (s *Store) get(ctx context.Context, id string) (*tinkv1.Workflow, error) {
	ns, name, err := splitID(id)
	if err != nil {
		return nil, err
	}
	var obj tinkv1.Workflow
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %s", store.ErrNotFound, id)
		}
		return nil, fmt.Errorf("reading Workflow %s: %w", id, err)
	}
	return &obj, nil
}

// Create implements store.Store: it creates the object (metadata and spec)
// and then writes its status, which the API server accepts only through the
// status subresource. A kiln-labelled object left without status by an
// interrupted Create gets it from the next Create of the same workflow; any
// other existing object is ErrExists.
func (s *Store) Create(ctx context.Context, w *workflow.Workflow) error {
	if w.Namespace != s.namespace {
		return fmt.Errorf("workflow %s is outside the store's namespace %s", w.ID(), s.namespace)
	}
	obj := toObject(w)
	if err := s.c.Create(ctx, obj); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Workflow %s: %w", w.ID(), err)
		}
		existing, gerr := s.get(ctx, w.ID())
		if gerr != nil {
			return gerr
		}
		if initialised(existing) || existing.Labels[ManagedByLabel] != managedBy {
			return fmt.Errorf("%w: %s", store.ErrExists, w.ID())
		}
		obj = existing
	}
	if err := setStatus(obj, w); err != nil {
		return err
	}
	if err := s.c.Status().Update(ctx, obj); err != nil {
		return fmt.Errorf("writing status of Workflow %s: %w", w.ID(), err)
	}
	return nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, id string) (*workflow.Workflow, error) {
	obj, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return fromObject(obj)
}

// list returns the workflows matching opts, sorted by id.
func (s *Store) list(ctx context.Context, opts ...client.ListOption) ([]*workflow.Workflow, error) {
	var objs tinkv1.WorkflowList
	if err := s.c.List(ctx, &objs, append(opts, client.InNamespace(s.namespace))...); err != nil {
		return nil, fmt.Errorf("listing Workflow objects in namespace %s: %w", s.namespace, err)
	}
	out := make([]*workflow.Workflow, 0, len(objs.Items))
	for i := range objs.Items {
		w, err := fromObject(&objs.Items[i])
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out, nil
}

// List implements store.Store: every Workflow object in the namespace.
func (s *Store) List(ctx context.Context) ([]*workflow.Workflow, error) {
	return s.list(ctx)
}

// ListByAgent implements store.Store with a label selector on the agent's
// label, so the API server returns only that agent's workflows.
func (s *Store) ListByAgent(ctx context.Context, agentID string) ([]*workflow.Workflow, error) {
	wfs, err := s.list(ctx, client.HasLabels{AgentLabel(agentID)})
	if err != nil {
		return nil, err
	}
	return store.FilterByAgent(wfs, agentID), nil
}

// Update implements store.Store: get → mutate → status update with the
// object's resourceVersion, retried on conflict, so concurrent updaters
// never lose each other's changes. mutate may therefore run more than once,
// each time on a fresh copy. Namespace, name, hardware, template and the
// tasks' workers live in metadata and spec and cannot change.
func (s *Store) Update(ctx context.Context, id string, mutate func(*workflow.Workflow) error) (*workflow.Workflow, error) {
	var out *workflow.Workflow
	err := retry.RetryOnConflict(conflictBackoff, func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		obj, err := s.get(ctx, id)
		if err != nil {
			return err
		}
		w, err := fromObject(obj)
		if err != nil {
			return err
		}
		if err := mutate(w); err != nil {
			return err
		}
		if err := checkImmutable(obj, w); err != nil {
			return fmt.Errorf("update of %s: %w", id, err)
		}
		if err := setStatus(obj, w); err != nil {
			return err
		}
		if err := s.c.Status().Update(ctx, obj); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("%w: %s", store.ErrNotFound, id)
			}
			return fmt.Errorf("writing status of Workflow %s: %w", id, err)
		}
		out = w
		return nil
	})
	if apierrors.IsConflict(err) {
		return nil, fmt.Errorf("workflow %s: gave up after %d conflicting concurrent updates: %w", id, conflictBackoff.Steps, err)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// checkImmutable rejects changes Update cannot write in one status update.
func checkImmutable(obj *tinkv1.Workflow, w *workflow.Workflow) error {
	switch {
	case w.Namespace != obj.Namespace || w.Name != obj.Name:
		return fmt.Errorf("tried to rename it to %s", w.ID())
	case w.Hardware != obj.Spec.HardwareRef || w.Template != obj.Spec.TemplateRef || w.AgentID != obj.Spec.HardwareMap[hardwareMapKey]:
		return errors.New("tried to change its hardware, template or agent (spec is fixed once created; delete and re-create the workflow)")
	}
	want := agentLabels(w)
	changed := false
	for k := range obj.Labels {
		changed = changed || strings.HasPrefix(k, AgentLabelPrefix) && want[k] == ""
	}
	for k := range want {
		_, ok := obj.Labels[k]
		changed = changed || strings.HasPrefix(k, AgentLabelPrefix) && !ok
	}
	if changed {
		return errors.New("tried to change the workers of its tasks (delete and re-create the workflow)")
	}
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, id string) error {
	ns, name, err := splitID(id)
	if err != nil {
		return err
	}
	obj := &tinkv1.Workflow{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := s.c.Delete(ctx, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%w: %s", store.ErrNotFound, id)
		}
		return fmt.Errorf("deleting Workflow %s: %w", id, err)
	}
	return nil
}
