package pivot_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tinkv1 "github.com/tinkerbell/tink/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	bootstrapv1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2"
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	bmcv1 "github.com/kiln-dev/kiln/pkg/apis/bmc/v1alpha1"
	infrav1 "github.com/kiln-dev/kiln/pkg/apis/infrastructure/v1beta1"
	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded/embeddedtest"
	"github.com/kiln-dev/kiln/pkg/pivot"
)

func TestMain(m *testing.M) {
	embeddedtest.MaybeRunChild()
	os.Exit(m.Run())
}

const ns = "kn7-move"

// graph builds the objects a provisioned cluster leaves on the bootstrap
// cluster, with status set as the controllers would have set it.
type graph struct {
	t   *testing.T
	c   client.Client
	ctx context.Context
	// created records every object so the test can look for it later.
	created []client.Object
}

func (g *graph) create(obj client.Object, owner client.Object) {
	g.t.Helper()
	obj.SetNamespace(ns)
	if owner != nil {
		gvk, err := apiutil.GVKForObject(owner, g.c.Scheme())
		if err != nil {
			g.t.Fatal(err)
		}
		obj.SetOwnerReferences([]metav1.OwnerReference{{
			APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: owner.GetName(), UID: owner.GetUID(), Controller: ptr.To(true),
		}})
	}
	// Status is not accepted on create; keep it and write it afterwards.
	withStatus := obj.DeepCopyObject().(client.Object)
	if err := g.c.Create(g.ctx, obj); err != nil {
		g.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
	withStatus.SetResourceVersion(obj.GetResourceVersion())
	withStatus.SetUID(obj.GetUID())
	if err := g.c.Status().Update(g.ctx, withStatus); err != nil && !apierrors.IsNotFound(err) {
		g.t.Fatalf("setting status of %T %s: %v", obj, obj.GetName(), err)
	}
	obj.SetResourceVersion(withStatus.GetResourceVersion())
	g.created = append(g.created, obj)
}

func ref(group, kind, name string) clusterv1.ContractVersionedObjectReference {
	return clusterv1.ContractVersionedObjectReference{APIGroup: group, Kind: kind, Name: name}
}

func machineSpec(name string) clusterv1.MachineSpec {
	return clusterv1.MachineSpec{
		ClusterName:       "c1",
		Version:           "v1.33.1",
		Bootstrap:         clusterv1.Bootstrap{ConfigRef: ref(bootstrapv1.GroupVersion.Group, "KubeadmConfig", name)},
		InfrastructureRef: ref(infrav1.GroupVersion.Group, "TinkerbellMachine", name),
	}
}

func buildGraph(t *testing.T, c client.Client) *graph {
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	g := &graph{t: t, c: c, ctx: ctx}
	clusterLabel := map[string]string{clusterv1.ClusterNameLabel: "c1"}
	now := metav1.Now()

	cluster := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "c1", Labels: map[string]string{"kiln.dev/cluster": "c1"}, Annotations: map[string]string{"kiln.dev/spec-hash": "abc"}},
		Spec: clusterv1.ClusterSpec{
			ControlPlaneEndpoint: clusterv1.APIEndpoint{Host: "10.10.50.100", Port: 6443},
			ControlPlaneRef:      ref(controlplanev1.GroupVersion.Group, "KubeadmControlPlane", "c1-cp"),
			InfrastructureRef:    ref(infrav1.GroupVersion.Group, "TinkerbellCluster", "c1"),
		},
		Status: clusterv1.ClusterStatus{
			Initialization: clusterv1.ClusterInitializationStatus{InfrastructureProvisioned: ptr.To(true), ControlPlaneInitialized: ptr.To(true)},
			Conditions:     []metav1.Condition{{Type: clusterv1.ClusterControlPlaneInitializedCondition, Status: metav1.ConditionTrue, Reason: "Initialized", LastTransitionTime: now}},
		},
	}
	g.create(cluster, nil)
	g.create(&infrav1.TinkerbellCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "c1", Labels: clusterLabel},
		Spec:       infrav1.TinkerbellClusterSpec{ControlPlaneEndpoint: infrav1.APIEndpoint{Host: "10.10.50.100", Port: 6443}},
		Status:     infrav1.TinkerbellClusterStatus{Ready: true},
	}, cluster)
	cpTemplate := &infrav1.TinkerbellMachineTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "c1-cp", Labels: clusterLabel},
		Spec: infrav1.TinkerbellMachineTemplateSpec{Template: infrav1.TinkerbellMachineTemplateResource{Spec: infrav1.TinkerbellMachineSpec{
			HardwareAffinity: &infrav1.HardwareAffinity{Required: []infrav1.HardwareAffinityTerm{{LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"type": "cp"}}}}},
			TemplateOverride: "version: \"0.1\"\nname: c1\n",
		}}},
	}
	g.create(cpTemplate, cluster)
	kcp := &controlplanev1.KubeadmControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: "c1-cp", Labels: clusterLabel},
		Spec: controlplanev1.KubeadmControlPlaneSpec{
			Replicas: ptr.To[int32](1),
			Version:  "v1.33.1",
			MachineTemplate: controlplanev1.KubeadmControlPlaneMachineTemplate{Spec: controlplanev1.KubeadmControlPlaneMachineTemplateSpec{
				InfrastructureRef: ref(infrav1.GroupVersion.Group, "TinkerbellMachineTemplate", "c1-cp"),
			}},
		},
	}
	g.create(kcp, cluster)
	g.create(&bootstrapv1.KubeadmConfigTemplate{ObjectMeta: metav1.ObjectMeta{Name: "c1-md-0", Labels: clusterLabel}}, cluster)
	g.create(&infrav1.TinkerbellMachineTemplate{ObjectMeta: metav1.ObjectMeta{Name: "c1-md-0", Labels: clusterLabel}}, cluster)
	mdLabels := map[string]string{clusterv1.ClusterNameLabel: "c1", clusterv1.MachineDeploymentNameLabel: "c1-md-0"}
	workerSpec := clusterv1.MachineSpec{
		ClusterName: "c1", Version: "v1.33.1",
		Bootstrap:         clusterv1.Bootstrap{ConfigRef: ref(bootstrapv1.GroupVersion.Group, "KubeadmConfigTemplate", "c1-md-0")},
		InfrastructureRef: ref(infrav1.GroupVersion.Group, "TinkerbellMachineTemplate", "c1-md-0"),
	}
	md := &clusterv1.MachineDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "c1-md-0", Labels: clusterLabel},
		Spec: clusterv1.MachineDeploymentSpec{
			ClusterName: "c1", Replicas: ptr.To[int32](1),
			Selector: metav1.LabelSelector{MatchLabels: mdLabels},
			Template: clusterv1.MachineTemplateSpec{ObjectMeta: clusterv1.ObjectMeta{Labels: mdLabels}, Spec: workerSpec},
		},
	}
	g.create(md, cluster)
	ms := &clusterv1.MachineSet{
		ObjectMeta: metav1.ObjectMeta{Name: "c1-md-0-x7k2p", Labels: mdLabels},
		Spec: clusterv1.MachineSetSpec{
			ClusterName: "c1", Replicas: ptr.To[int32](1),
			Selector: metav1.LabelSelector{MatchLabels: mdLabels},
			Template: clusterv1.MachineTemplateSpec{ObjectMeta: clusterv1.ObjectMeta{Labels: mdLabels}, Spec: workerSpec},
		},
	}
	g.create(ms, md)

	machines := []struct {
		name, hw string
		owner    client.Object
		labels   map[string]string
	}{
		{"c1-cp-9fz2l", "cp01", kcp, map[string]string{clusterv1.ClusterNameLabel: "c1", clusterv1.MachineControlPlaneLabel: ""}},
		{"c1-md-0-x7k2p-4wq8n", "wk01", ms, mdLabels},
	}
	for _, m := range machines {
		machine := &clusterv1.Machine{
			ObjectMeta: metav1.ObjectMeta{Name: m.name, Labels: m.labels},
			Spec:       machineSpec(m.name),
			Status:     clusterv1.MachineStatus{NodeRef: clusterv1.MachineNodeReference{Name: m.hw}},
		}
		g.create(machine, m.owner)
		g.create(&bootstrapv1.KubeadmConfig{ObjectMeta: metav1.ObjectMeta{Name: m.name, Labels: m.labels}}, machine)
		g.create(&infrav1.TinkerbellMachine{
			ObjectMeta: metav1.ObjectMeta{Name: m.name, Labels: m.labels},
			Spec:       infrav1.TinkerbellMachineSpec{HardwareName: m.hw, ProviderID: "tinkerbell://" + ns + "/" + m.hw},
			Status:     infrav1.TinkerbellMachineStatus{Ready: true, Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.10.50.11"}}},
		}, machine)
		g.create(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "bmc-" + m.hw + "-auth", Labels: map[string]string{"clusterctl.cluster.x-k8s.io/move": "true"}},
			Type:       corev1.SecretTypeBasicAuth,
			Data:       map[string][]byte{"username": []byte("root"), "password": []byte("s3cret")},
		}, nil)
		g.create(&bmcv1.Machine{
			ObjectMeta: metav1.ObjectMeta{Name: "bmc-" + m.hw},
			Spec: bmcv1.MachineSpec{Connection: bmcv1.Connection{
				Host: "10.10.44.11", Port: 623, InsecureTLS: true,
				AuthSecretRef: corev1.SecretReference{Name: "bmc-" + m.hw + "-auth", Namespace: ns},
			}},
			Status: bmcv1.MachineStatus{Power: bmcv1.PowerOnState, Conditions: []bmcv1.MachineCondition{{Type: bmcv1.MachineContactable, Status: bmcv1.ConditionTrue}}},
		}, nil)
		g.create(&tinkv1.Hardware{
			ObjectMeta: metav1.ObjectMeta{
				Name: m.hw,
				Labels: map[string]string{
					"v1alpha1.tinkerbell.org/ownerName": m.name, "v1alpha1.tinkerbell.org/ownerNamespace": ns, "type": "cp",
				},
				Annotations: map[string]string{"v1alpha1.tinkerbell.org/provisioned": "true"},
			},
			Spec: tinkv1.HardwareSpec{BMCRef: &corev1.TypedLocalObjectReference{APIGroup: ptr.To("bmc.tinkerbell.org"), Kind: "Machine", Name: "bmc-" + m.hw}, Disks: []tinkv1.Disk{{Device: "/dev/sda"}}},
		}, nil)
	}
	g.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "c1-kubeconfig", Labels: clusterLabel}, Data: map[string][]byte{"value": []byte("apiVersion: v1\nkind: Config\n")}}, cluster)
	g.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "c1-ca"}, Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}}, nil)
	// Not part of any cluster and without a move label: stays behind.
	g.create(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "operator-notes"}, Data: map[string]string{"a": "b"}}, nil)
	return g
}

// TestMoveBetweenEmbeddedControlPlanes is the real pivot: two embedded
// control planes, a full provisioned object graph, clusterctl move.
func TestMoveBetweenEmbeddedControlPlanes(t *testing.T) {
	ctx := context.Background()
	srcCluster, src := embeddedtest.Start(t, "kn7-src")
	dstCluster, dst := embeddedtest.Start(t, "kn7-dst")
	g := buildGraph(t, src)

	// A move to an unreachable target fails clearly and leaves the source intact.
	bad := filepath.Join(t.TempDir(), "unreachable.kubeconfig")
	data, err := os.ReadFile(dstCluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(string(data), dstCluster.Endpoint, "https://127.0.0.1:1", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = pivot.Move(ctx, pivot.Options{FromKubeconfig: srcCluster.Kubeconfig, ToKubeconfig: bad, Namespace: ns, ReachTimeout: 3 * time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "target cluster") || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("move to an unreachable target: %v", err)
	}
	for _, obj := range g.created {
		if err := src.Get(ctx, client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object)); err != nil {
			t.Errorf("after the failed move %T %s is gone from the source: %v", obj, obj.GetName(), err)
		}
	}
	var c clusterv1.Cluster
	if err := src.Get(ctx, client.ObjectKey{Namespace: ns, Name: "c1"}, &c); err != nil || ptr.Deref(c.Spec.Paused, false) {
		t.Fatalf("source Cluster after the failed move: paused=%v err=%v", ptr.Deref(c.Spec.Paused, false), err)
	}

	// The real move.
	var steps []string
	start := time.Now()
	res, err := pivot.Move(ctx, pivot.Options{FromKubeconfig: srcCluster.Kubeconfig, ToKubeconfig: dstCluster.Kubeconfig, Namespace: ns},
		func(name string, took time.Duration, err error) { steps = append(steps, name) })
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	t.Logf("move of %d objects took %s (steps %v)", len(res.Moved), time.Since(start).Round(time.Millisecond), steps)

	// Every object except the unrelated ConfigMap moved; nothing is left.
	for _, obj := range g.created {
		key := client.ObjectKeyFromObject(obj)
		srcObj := obj.DeepCopyObject().(client.Object)
		srcErr := src.Get(ctx, key, srcObj)
		if obj.GetName() == "operator-notes" {
			if srcErr != nil {
				t.Errorf("unrelated ConfigMap should stay on the source: %v", srcErr)
			}
			continue
		}
		if !apierrors.IsNotFound(srcErr) {
			t.Errorf("%T %s left behind on the source (err %v)", obj, key, srcErr)
		}
		got := obj.DeepCopyObject().(client.Object)
		if err := dst.Get(ctx, key, got); err != nil {
			t.Errorf("%T %s missing on the target: %v", obj, key, err)
			continue
		}
		for k, v := range obj.GetLabels() {
			if got.GetLabels()[k] != v {
				t.Errorf("%T %s: label %s=%q lost (target %v)", obj, key, k, v, got.GetLabels())
			}
		}
		for k, v := range obj.GetAnnotations() {
			if got.GetAnnotations()[k] != v {
				t.Errorf("%T %s: annotation %s=%q lost", obj, key, k, v)
			}
		}
		// Owner references rebuilt: same owner, the target's UID.
		if len(got.GetOwnerReferences()) != len(obj.GetOwnerReferences()) {
			t.Errorf("%T %s: %d owner refs on target, %d on source", obj, key, len(got.GetOwnerReferences()), len(obj.GetOwnerReferences()))
		}
		for _, or := range got.GetOwnerReferences() {
			owner := &unstructured.Unstructured{}
			owner.SetAPIVersion(or.APIVersion)
			owner.SetKind(or.Kind)
			if err := dst.Get(ctx, client.ObjectKey{Namespace: ns, Name: or.Name}, owner); err != nil {
				t.Errorf("%T %s: owner %s %s not on target: %v", obj, key, or.Kind, or.Name, err)
			} else if owner.GetUID() != or.UID {
				t.Errorf("%T %s: owner ref to %s %s has uid %s, the target object has %s", obj, key, or.Kind, or.Name, or.UID, owner.GetUID())
			}
			for _, sor := range obj.GetOwnerReferences() {
				if sor.Name == or.Name && sor.UID == or.UID {
					t.Errorf("%T %s: owner ref still carries the source uid", obj, key)
				}
			}
		}
	}
	if err := dst.Get(ctx, client.ObjectKey{Namespace: ns, Name: "c1"}, &c); err != nil || ptr.Deref(c.Spec.Paused, false) {
		t.Fatalf("target Cluster: paused=%v err=%v", ptr.Deref(c.Spec.Paused, false), err)
	}
	if len(res.Stayed) != 1 || res.Stayed[0].Name != "operator-notes" {
		t.Errorf("result stayed = %v, want only the unrelated ConfigMap", res.Stayed)
	}
	if want := len(g.created) - 1; len(res.Moved) != want {
		t.Errorf("result moved %d objects, want %d: %v", len(res.Moved), want, res.Moved)
	}
}
