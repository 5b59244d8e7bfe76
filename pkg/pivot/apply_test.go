package pivot_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kiln-dev/kiln/pkg/bootstrap/embedded/embeddedtest"
	"github.com/kiln-dev/kiln/pkg/capi"
	"github.com/kiln-dev/kiln/pkg/validate"
)

// TestGeneratedObjectsApply creates what `kiln generate capi` produces in a
// bootstrap cluster with kiln's CRDs: the API server's schema validation
// (including Cluster API's CEL rules) must accept every object.
func TestGeneratedObjectsApply(t *testing.T) {
	ctx := context.Background()
	_, c := embeddedtest.Start(t, "kn7-apply")
	cases := []struct{ spec, csv, ns string }{
		{"../../hardware/examples/ClusterSpec.yml", "../../hardware/examples/Hardware.csv", "example"},
		{"../capi/testdata/full.yml", "../capi/testdata/full.csv", "full"},
	}
	for _, tc := range cases {
		r := validate.Files(tc.spec, tc.csv)
		if !r.Valid() {
			t.Fatalf("%s: %v", tc.spec, r.Problems)
		}
		objs, err := capi.Generate(r.Spec, r.Inventory, capi.Options{Namespace: tc.ns})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tc.ns}}); err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if err := c.Create(ctx, o); err != nil {
				t.Errorf("%s: creating %T %s: %v", tc.spec, o, o.GetName(), err)
				continue
			}
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
				t.Errorf("%s: reading back %T %s: %v", tc.spec, o, o.GetName(), err)
			}
		}
		t.Logf("%s: %d objects accepted", tc.spec, len(objs))
	}
}
