// Package spec loads an EKS Anywhere bare-metal ClusterSpec: the
// multi-document YAML file with a Cluster, a TinkerbellDatacenterConfig,
// TinkerbellMachineConfigs and TinkerbellTemplateConfigs under
// anywhere.eks.amazonaws.com/v1alpha1. Decoding is strict (an unknown field is
// an error naming the document, the field path and the line), defaults are
// applied, and every static check runs so that all problems are reported at
// once as a diag.List.
package spec
