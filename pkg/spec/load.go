package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kiln-dev/kiln/pkg/diag"
)

// ClusterSpec is a loaded, defaulted and checked ClusterSpec file: one
// Cluster, its TinkerbellDatacenterConfig, the TinkerbellMachineConfigs its
// node groups use and any TinkerbellTemplateConfigs.
type ClusterSpec struct {
	Path            string                      `json:"path"`
	Cluster         *Cluster                    `json:"cluster"`
	Datacenter      *TinkerbellDatacenterConfig `json:"datacenter"`
	MachineConfigs  []*TinkerbellMachineConfig  `json:"machineConfigs"`
	TemplateConfigs []*TinkerbellTemplateConfig `json:"templateConfigs,omitempty"`
	// Warnings are problems that do not make the spec invalid.
	Warnings diag.List `json:"warnings,omitempty"`

	docs []*document
}

// document is one YAML document of the file with the positions of its fields.
type document struct {
	index int // 1-based position in the file
	kind  string
	name  string
	line  int
	lines map[string]int
	// badPaths are fields that failed to decode; checks skip them so that
	// one mistake is reported once.
	badPaths map[string]bool
	obj      any
}

func (d *document) label() string {
	if d.name != "" {
		return d.kind + "/" + d.name
	}
	if d.kind != "" {
		return fmt.Sprintf("%s (document %d)", d.kind, d.index)
	}
	return fmt.Sprintf("document %d", d.index)
}

// lineOf returns the line of path, or of its closest parent that appears in
// the document, or the document's first line.
func (d *document) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := d.lines[p]; ok {
			return l
		}
	}
	return d.line
}

var pathTailRE = regexp.MustCompile(`(\.[^.\[]*|\[\d+\])$`)

// parentPath drops the last segment of a field path: "a.b[2]" → "a.b" → "a" → "".
func parentPath(p string) string {
	q := pathTailRE.ReplaceAllString(p, "")
	if q == p {
		return ""
	}
	return q
}

// LoadFile reads, defaults and checks the ClusterSpec at path. When the file
// has problems the error is a diag.List holding every one of them (use
// errors.As); warnings of a valid file are in ClusterSpec.Warnings.
func LoadFile(path string) (*ClusterSpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster spec: %w", err)
	}
	return Load(data, path)
}

// Load is LoadFile for data already in memory; name is used in problems.
func Load(data []byte, name string) (*ClusterSpec, error) {
	s, problems := parse(data, name)
	if s != nil {
		s.applyDefaults()
		problems = append(problems, s.check()...)
	}
	problems.Sort()
	if problems.HasErrors() {
		return nil, problems
	}
	s.Warnings = problems
	return s, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlParserProblems are yaml.v3 parser (not scanner) errors: for these it
// reports the 0-based line of the construct being parsed.
var yamlParserProblems = []string{"did not find expected key", "did not find expected node content",
	"did not find expected '-' indicator", "did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"did not find expected <document start>", "found undefined tag handle", "found duplicate %YAML directive", "found incompatible YAML document"}

// yamlErrorLine extracts a 1-based line and the bare message from a yaml.v3
// syntax error.
func yamlErrorLine(err error) (int, string) {
	msg := err.Error()
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, strings.TrimPrefix(msg, "yaml: ")
	}
	line, _ := strconv.Atoi(m[1])
	msg = msg[len(m[0]):]
	for _, p := range yamlParserProblems {
		if strings.HasPrefix(msg, p) {
			line++
			break
		}
	}
	return line, msg
}

// parse splits the file into documents and decodes each strictly. It returns
// a nil spec only when the YAML itself cannot be read.
func parse(data []byte, file string) (*ClusterSpec, diag.List) {
	var problems diag.List
	s := &ClusterSpec{Path: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for index := 1; ; index++ {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, msg := yamlErrorLine(err)
			problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: file, Line: line,
				Document: fmt.Sprintf("document %d", index), Message: "not valid YAML: " + msg})
			return nil, problems
		}
		if len(root.Content) == 0 {
			continue
		}
		n := root.Content[0]
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			continue // an empty document, e.g. a leading ---
		}
		doc, docProblems := decodeDocument(n, index, file)
		problems = append(problems, docProblems...)
		if doc != nil {
			s.add(doc)
		}
	}
	if len(s.docs) == 0 && !problems.HasErrors() {
		problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: file,
			Message: "the file holds no documents: start from `kiln generate clusterconfig NAME`"})
	}
	return s, problems
}

func (s *ClusterSpec) add(doc *document) {
	s.docs = append(s.docs, doc)
	switch o := doc.obj.(type) {
	case *Cluster:
		if s.Cluster == nil {
			s.Cluster = o
		}
	case *TinkerbellDatacenterConfig:
		if s.Datacenter == nil {
			s.Datacenter = o
		}
	case *TinkerbellMachineConfig:
		s.MachineConfigs = append(s.MachineConfigs, o)
	case *TinkerbellTemplateConfig:
		s.TemplateConfigs = append(s.TemplateConfigs, o)
	}
}

// decodeDocument decodes one document by its kind. Documents of other EKS
// Anywhere kinds are skipped with a warning; the returned document is nil for
// them and for documents that cannot be identified.
func decodeDocument(n *yaml.Node, index int, file string) (*document, diag.List) {
	doc := &document{index: index, line: n.Line}
	var problems diag.List
	fail := func(line int, field, format string, args ...any) (*document, diag.List) {
		problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: file, Line: line, Document: doc.label(), Field: field, Message: fmt.Sprintf(format, args...)})
		return nil, problems
	}
	if n.Kind != yaml.MappingNode {
		return fail(n.Line, "", "a document must be a mapping with apiVersion, kind, metadata and spec, not %s", nodeDescription(n))
	}
	var apiVersion, kind string
	kindLine, apiLine := n.Line, n.Line
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k, v := n.Content[i], n.Content[i+1]; k.Value {
		case "apiVersion":
			apiVersion, apiLine = v.Value, v.Line
		case "kind":
			kind, kindLine = v.Value, v.Line
		}
	}
	doc.kind = kind
	var obj any
	switch kind {
	case KindCluster:
		obj = &Cluster{}
	case KindTinkerbellDatacenterConfig:
		obj = &TinkerbellDatacenterConfig{}
	case KindTinkerbellMachineConfig:
		obj = &TinkerbellMachineConfig{}
	case KindTinkerbellTemplateConfig:
		obj = &TinkerbellTemplateConfig{}
	case "":
		return fail(n.Line, "kind", "the document has no kind: set kind to one of %s, %s, %s, %s", KindCluster, KindTinkerbellDatacenterConfig, KindTinkerbellMachineConfig, KindTinkerbellTemplateConfig)
	default:
		if apiVersion == APIVersion {
			problems = append(problems, diag.Problem{Severity: diag.SeverityWarning, File: file, Line: kindLine, Document: doc.label(), Field: "kind",
				Message: fmt.Sprintf("kind %s is not used by kiln on bare metal; the document is ignored", kind)})
			return nil, problems
		}
		return fail(kindLine, "kind", "kind %s (apiVersion %q) is not part of an EKS Anywhere bare-metal ClusterSpec: kiln reads %s, %s, %s and %s under %s", kind, apiVersion, KindCluster, KindTinkerbellDatacenterConfig, KindTinkerbellMachineConfig, KindTinkerbellTemplateConfig, APIVersion)
	}
	if apiVersion != APIVersion {
		// Reported, and the document is still decoded so that references to it
		// resolve and its other problems are found in the same run.
		problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: file, Line: apiLine, Document: doc.label(), Field: "apiVersion",
			Message: fmt.Sprintf("apiVersion must be %s, not %q", APIVersion, apiVersion)})
	}

	d := newDecoder()
	d.decode(n, reflect.ValueOf(obj).Elem(), "")
	doc.lines = d.lines
	doc.obj = obj
	doc.name = reflect.ValueOf(obj).Elem().FieldByName("Metadata").FieldByName("Name").String()
	doc.badPaths = map[string]bool{}
	for _, p := range d.suppressed {
		doc.badPaths[p] = true
	}
	for _, e := range d.errs {
		doc.badPaths[e.path] = true
		problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: file, Line: e.line, Document: doc.label(), Field: e.path, Message: e.msg})
	}
	return doc, problems
}
