package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tinkv1 "github.com/tinkerbell/tink/api/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kiln-dev/kiln/pkg/kubeclient"
	pb "github.com/kiln-dev/kiln/pkg/workerapi/proto"
)

// TestServeWorkflowKubeconfig runs the workflow server against an embedded
// bootstrap cluster: workflows become tinkerbell.org/v1alpha1 Workflow
// objects whose status follows the agent's reports, and `kiln workflows
// --kubeconfig` reads them without a server.
func TestServeWorkflowKubeconfig(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded bootstrap cluster")
	}
	dir := filepath.Join(t.TempDir(), "kn4")
	csv := filepath.Join(t.TempDir(), "hw.csv")
	if err := os.WriteFile(csv, []byte(testCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run(t, "bootstrap", "delete", "--name", "kn4", "--dir", dir) })
	if code, out, errOut := run(t, "bootstrap", "create", "--name", "kn4", "--dir", dir, "--bootstrap", "embedded"); code != ExitOK {
		t.Fatalf("bootstrap create: exit %d\n%s%s", code, out, errOut)
	}
	kubeconfig := filepath.Join(dir, "generated", "bootstrap.kubeconfig")

	srv := serveWorkflow(t, csv, "--kubeconfig", kubeconfig)
	act := srv.getAction(t, "cc:48:3a:00:00:02")
	if act.GetWorkflowId() != "eksa-system/wk01" {
		t.Fatalf("GetAction: %v", act)
	}
	if got := srv.out.String(); !strings.Contains(got, "Workflow objects in namespace eksa-system of "+kubeconfig+": 2 created, 0 resumed") {
		t.Errorf("progress output:\n%s", got)
	}
	running := pb.ActionStatusRequest_RUNNING
	if _, err := srv.wf.ReportActionStatus(context.Background(), &pb.ActionStatusRequest{WorkflowId: act.WorkflowId, TaskId: act.TaskId, ActionId: act.ActionId,
		ActionState: &running, Message: &pb.ActionMessage{Message: ptr("streaming")}}); err != nil {
		t.Fatal(err)
	}

	c, err := kubeclient.New(kubeconfig, kubeclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var obj tinkv1.Workflow
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "eksa-system", Name: "wk01"}, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.Status.State != tinkv1.WorkflowStateRunning || obj.Spec.HardwareRef != "wk01" || len(obj.Status.Tasks) != 1 ||
		obj.Status.Tasks[0].Actions[0].Status != tinkv1.WorkflowStateRunning || obj.Status.CurrentAction != act.GetName() {
		t.Fatalf("Workflow object after RUNNING: spec %+v status %+v", obj.Spec, obj.Status)
	}
	code, out, errOut := run(t, "workflows", "show", "wk01", "--kubeconfig", kubeconfig)
	if code != ExitOK || !strings.Contains(out, "Workflow eksa-system/wk01: RUNNING") {
		t.Errorf("workflows show --kubeconfig: exit %d\n%s%s", code, out, errOut)
	}
}
