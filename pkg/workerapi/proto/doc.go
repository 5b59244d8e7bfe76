// Package proto is the generated Go code for kiln's copy of Tinkerbell's agent
// API (package proto, service WorkflowService: GetAction and
// ReportActionStatus), wire-compatible with Tinkerbell's agent. Edit
// workflow.proto and run `make generate`; never edit the .pb.go files.
package proto
