// Package pivot moves a cluster's Cluster API objects from the bootstrap
// cluster into the new management cluster with clusterctl's move library
// (sigs.k8s.io/cluster-api/cmd/clusterctl/client), limited to one namespace.
//
// Around clusterctl's own checks (provider inventory versions, provisioning
// completed, pause/unpause) kiln adds: a fast reachability check of the
// target so an unreachable cluster fails before anything is paused; a check
// that the target serves every CRD whose objects would move; and, after the
// move, a verification that every object that left the source exists on the
// target with its labels, annotations and owner references (re-pointed at
// the target's UIDs), and that every moved Cluster is unpaused.
package pivot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	clusterctl "sigs.k8s.io/cluster-api/cmd/clusterctl/client"
	clusterctllog "sigs.k8s.io/cluster-api/cmd/clusterctl/log"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kiln-dev/kiln/pkg/bootstrap"
	"github.com/kiln-dev/kiln/pkg/crds"
	"github.com/kiln-dev/kiln/pkg/kubeclient"
)

// Options says what to move where.
type Options struct {
	// FromKubeconfig is the bootstrap cluster (source).
	FromKubeconfig string
	// ToKubeconfig is the new management cluster (target).
	ToKubeconfig string
	// Namespace holds the Cluster API objects to move.
	Namespace string
	// ReachTimeout bounds the target reachability check (default 10s).
	ReachTimeout time.Duration
	// Log receives clusterctl's messages; nil discards them.
	Log *slog.Logger
}

// Object identifies one Kubernetes object.
type Object struct {
	Kind      string `json:"kind"`
	Group     string `json:"group,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (o Object) String() string {
	k := o.Kind
	if o.Group != "" {
		k += "." + o.Group
	}
	return k + " " + o.Namespace + "/" + o.Name
}

// Result lists what moved and what stayed on the source.
type Result struct {
	Moved []Object `json:"moved"`
	// Stayed are objects of movable kinds in the namespace that are not part
	// of any Cluster's hierarchy and carry no move label; clusterctl leaves
	// them on the source by design.
	Stayed []Object `json:"stayed,omitempty"`
}

// snapshot is every object of the movable kinds in the namespace.
type snapshot map[Object]*unstructured.Unstructured

// Move runs the move and verifies it. step reports progress (may be nil).
func Move(ctx context.Context, opts Options, step bootstrap.Step) (*Result, error) {
	if step == nil {
		step = func(string, time.Duration, error) {}
	}
	if opts.Namespace == "" {
		return nil, errors.New("pivot: a namespace is required")
	}
	run := func(name string, f func() error) error {
		start := time.Now()
		err := f()
		step(name, time.Since(start), err)
		return err
	}
	var from, to client.Client
	err := run("connect to bootstrap and target clusters", func() error {
		var err error
		if from, err = connect(ctx, opts.FromKubeconfig, "bootstrap (source)", opts.ReachTimeout); err != nil {
			return err
		}
		to, err = connect(ctx, opts.ToKubeconfig, "target", opts.ReachTimeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	var kinds []movableKind
	var before snapshot
	err = run("check the target serves every kind that moves", func() error {
		var err error
		if kinds, err = movableKinds(ctx, from); err != nil {
			return err
		}
		if before, err = take(ctx, from, kinds, opts.Namespace); err != nil {
			return err
		}
		return checkTarget(ctx, to, kinds, before)
	})
	if err != nil {
		return nil, err
	}
	err = run(fmt.Sprintf("clusterctl move of namespace %s (%d objects of movable kinds)", opts.Namespace, len(before)), func() error {
		log := opts.Log
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		// clusterctl and controller-runtime log through process-wide
		// loggers; route both to kiln's slog handler.
		clusterctllog.SetLogger(logr.FromSlogHandler(log.Handler()))
		ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
		c, err := clusterctl.New(ctx, "")
		if err != nil {
			return fmt.Errorf("initialising the clusterctl library: %w", err)
		}
		return c.Move(ctx, clusterctl.MoveOptions{
			FromKubeconfig: clusterctl.Kubeconfig{Path: opts.FromKubeconfig},
			ToKubeconfig:   clusterctl.Kubeconfig{Path: opts.ToKubeconfig},
			Namespace:      opts.Namespace,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("clusterctl move failed: %w", err)
	}
	var res *Result
	err = run("verify every moved object arrived", func() error {
		var err error
		res, err = verify(ctx, from, to, kinds, opts.Namespace, before)
		return err
	})
	return res, err
}

func connect(ctx context.Context, kubeconfig, role string, timeout time.Duration) (client.Client, error) {
	c, err := kubeclient.New(kubeconfig, kubeclient.Options{})
	if err != nil {
		return nil, fmt.Errorf("%s cluster: %w", role, err)
	}
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.List(ctx, &apiextensionsv1.CustomResourceDefinitionList{}, client.Limit(1)); err != nil {
		return nil, fmt.Errorf("the %s cluster (kubeconfig %s) is not reachable: %w", role, kubeconfig, err)
	}
	return c, nil
}

// movableKind is a kind clusterctl move discovers (CRD labelled
// clusterctl.cluster.x-k8s.io, storage version) or a Secret/ConfigMap.
type movableKind struct {
	gvk        schema.GroupVersionKind
	namespaced bool
	crd        string
}

func movableKinds(ctx context.Context, c client.Client) ([]movableKind, error) {
	var list apiextensionsv1.CustomResourceDefinitionList
	if err := c.List(ctx, &list, client.HasLabels{crds.ClusterctlLabel}); err != nil {
		return nil, fmt.Errorf("listing CRDs on the source: %w", err)
	}
	kinds := []movableKind{
		{gvk: schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, namespaced: true},
		{gvk: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, namespaced: true},
	}
	for _, crd := range list.Items {
		for _, v := range crd.Spec.Versions {
			if v.Storage {
				kinds = append(kinds, movableKind{
					gvk:        schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind},
					namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
					crd:        crd.Name,
				})
			}
		}
	}
	return kinds, nil
}

func take(ctx context.Context, c client.Client, kinds []movableKind, ns string) (snapshot, error) {
	s := snapshot{}
	for _, k := range kinds {
		if !k.namespaced {
			continue
		}
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(k.gvk.GroupVersion().WithKind(k.gvk.Kind + "List"))
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("listing %s in %s: %w", k.gvk.Kind, ns, err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			if k.gvk.Kind == "Secret" && o.Object["type"] == "kubernetes.io/service-account-token" {
				continue
			}
			s[objectOf(k.gvk, o)] = o
		}
	}
	return s, nil
}

func objectOf(gvk schema.GroupVersionKind, o client.Object) Object {
	return Object{Kind: gvk.Kind, Group: gvk.Group, Namespace: o.GetNamespace(), Name: o.GetName()}
}

// checkTarget fails when a kind with objects to move has no CRD on the target.
func checkTarget(ctx context.Context, to client.Client, kinds []movableKind, before snapshot) error {
	used := map[string]bool{}
	for o := range before {
		used[o.Kind+"."+o.Group] = true
	}
	var missing []string
	for _, k := range kinds {
		if k.crd == "" || !used[k.gvk.Kind+"."+k.gvk.Group] {
			continue
		}
		err := to.Get(ctx, client.ObjectKey{Name: k.crd}, &apiextensionsv1.CustomResourceDefinition{})
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, k.crd)
		case err != nil:
			return fmt.Errorf("looking up CRD %s on the target: %w", k.crd, err)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("the target cluster lacks CRDs for objects that would move: %s; install them first (kiln installs them with its providers)", strings.Join(missing, ", "))
	}
	return nil
}

// verify compares the source before and after the move with the target.
func verify(ctx context.Context, from, to client.Client, kinds []movableKind, ns string, before snapshot) (*Result, error) {
	after, err := take(ctx, from, kinds, ns)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	var problems []string
	uids := map[types.UID]bool{}
	targets := map[Object]*unstructured.Unstructured{}
	for obj, src := range before {
		if _, still := after[obj]; still {
			res.Stayed = append(res.Stayed, obj)
			continue
		}
		dst := &unstructured.Unstructured{}
		dst.SetGroupVersionKind(src.GroupVersionKind())
		if err := to.Get(ctx, client.ObjectKey{Namespace: obj.Namespace, Name: obj.Name}, dst); err != nil {
			problems = append(problems, fmt.Sprintf("%s left the source but is not on the target: %v", obj, err))
			continue
		}
		res.Moved = append(res.Moved, obj)
		targets[obj] = dst
		uids[dst.GetUID()] = true
		if !subset(src.GetLabels(), dst.GetLabels()) {
			problems = append(problems, fmt.Sprintf("%s lost labels: source %v, target %v", obj, src.GetLabels(), dst.GetLabels()))
		}
		if !subset(withoutMoveAnnotations(src.GetAnnotations()), dst.GetAnnotations()) {
			problems = append(problems, fmt.Sprintf("%s lost annotations: source %v, target %v", obj, src.GetAnnotations(), dst.GetAnnotations()))
		}
		if len(src.GetOwnerReferences()) != len(dst.GetOwnerReferences()) {
			problems = append(problems, fmt.Sprintf("%s has %d owner references on the target, %d on the source", obj, len(dst.GetOwnerReferences()), len(src.GetOwnerReferences())))
		}
		if dst.GetKind() == "Cluster" && dst.GroupVersionKind().Group == clusterv1.GroupVersion.Group {
			if paused, _, _ := unstructured.NestedBool(dst.Object, "spec", "paused"); paused {
				problems = append(problems, fmt.Sprintf("%s is still paused on the target", obj))
			}
		}
	}
	// Owner references must point at objects that exist on the target now.
	for obj, dst := range targets {
		for _, ref := range dst.GetOwnerReferences() {
			if !uids[ref.UID] {
				problems = append(problems, fmt.Sprintf("%s: owner reference %s/%s (uid %s) does not point at a moved object on the target", obj, ref.Kind, ref.Name, ref.UID))
			}
		}
	}
	sortObjects(res.Moved)
	sortObjects(res.Stayed)
	if len(problems) > 0 {
		slices.Sort(problems)
		return res, fmt.Errorf("move verification failed:\n  %s", strings.Join(problems, "\n  "))
	}
	return res, nil
}

func withoutMoveAnnotations(in map[string]string) map[string]string {
	out := maps.Clone(in)
	for k := range out {
		if strings.HasPrefix(k, "clusterctl.cluster.x-k8s.io/") || k == "kubectl.kubernetes.io/last-applied-configuration" {
			delete(out, k)
		}
	}
	return out
}

func subset(a, b map[string]string) bool {
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func sortObjects(objs []Object) {
	slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.String(), b.String()) })
}
