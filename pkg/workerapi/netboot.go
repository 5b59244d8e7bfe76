package workerapi

import "github.com/kiln-dev/kiln/pkg/workflow"

// NetbootSwitch returns an Options.OnChange hook that tells the netboot
// stack whether a machine should still network-boot: off once its workflow
// succeeded (so it boots the installed disk from then on, even if its boot
// order still starts with the network), on again when the workflow is reset
// for reprovisioning. set is typically (*netboot.Toggle).Set; it is called
// with every worker MAC of the workflow. Workflows that failed keep
// netbooting so a power cycle retries after a reset.
func NetbootSwitch(set func(mac string, allowed bool)) func(*workflow.Workflow) {
	return func(w *workflow.Workflow) {
		var allowed bool
		switch w.State {
		case workflow.StateSuccess:
			allowed = false
		case workflow.StatePending:
			allowed = true
		default:
			return
		}
		seen := map[string]bool{}
		for _, t := range w.Tasks {
			if !seen[t.AgentID] {
				seen[t.AgentID] = true
				set(t.AgentID, allowed)
			}
		}
	}
}
