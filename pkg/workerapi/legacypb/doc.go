// Package legacypb is the generated Go code for the messages of Tinkerbell's
// older worker API (GetWorkflowContexts / GetWorkflowActions /
// ReportActionStatus). Edit legacy.proto and run `make generate`.
package legacypb
