// Package kilnpb is the generated Go code for kiln's own worker API services
// (agent log streaming and workflow administration) that sit next to
// Tinkerbell's WorkflowService on the same port. Edit kiln.proto and run
// `make generate`; never edit the .pb.go files.
package kilnpb
