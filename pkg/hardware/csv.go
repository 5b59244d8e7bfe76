package hardware

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gocarina/gocsv"

	"github.com/kiln-dev/kiln/pkg/diag"
)

// Column names of Hardware.csv.
const (
	ColHostname    = "hostname"
	ColIPAddress   = "ip_address"
	ColNetmask     = "netmask"
	ColGateway     = "gateway"
	ColNameservers = "nameservers"
	ColMAC         = "mac"
	ColDisk        = "disk"
	ColLabels      = "labels"
	ColBMCIP       = "bmc_ip"
	ColBMCUsername = "bmc_username"
	ColBMCPassword = "bmc_password"
	ColVLANID      = "vlan_id"
)

// RequiredColumns must appear in every Hardware.csv header, in any order.
var RequiredColumns = []string{ColHostname, ColIPAddress, ColNetmask, ColGateway, ColNameservers, ColMAC, ColDisk, ColLabels}

// OptionalColumns may appear; any other column is reported as a warning.
var OptionalColumns = []string{ColBMCIP, ColBMCUsername, ColBMCPassword, ColVLANID}

// csvRow is one Hardware.csv record as gocsv binds it by header name.
type csvRow struct {
	Hostname    string `csv:"hostname"`
	IPAddress   string `csv:"ip_address"`
	Netmask     string `csv:"netmask"`
	Gateway     string `csv:"gateway"`
	Nameservers string `csv:"nameservers"`
	MAC         string `csv:"mac"`
	Disk        string `csv:"disk"`
	Labels      string `csv:"labels"`
	BMCIP       string `csv:"bmc_ip"`
	BMCUsername string `csv:"bmc_username"`
	BMCPassword string `csv:"bmc_password"`
	VLANID      string `csv:"vlan_id"`
}

// ReadFile reads and validates the Hardware.csv at path. When the file has
// problems the error is a diag.List holding every one of them (use errors.As);
// warnings of a valid file are in Inventory.Warnings.
func ReadFile(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read hardware inventory: %w", err)
	}
	return Read(bytes.NewReader(data), path)
}

// Read reads and validates a Hardware.csv from r; name is used in problems.
func Read(r io.Reader, name string) (*Inventory, error) {
	t, problems := parse(r, name)
	inv, rowProblems := t.machines(name)
	problems = append(problems, rowProblems...)
	problems.Sort()
	if problems.HasErrors() {
		return nil, problems
	}
	inv.Warnings = problems
	return inv, nil
}

// table is the CSV after structural parsing: the header's columns and the rows
// that have one field per column, with the line each starts on.
type table struct {
	columns map[string]bool
	rows    []csvRow
	lines   []int
}

// recordSource hands records that were already read to gocsv.
type recordSource struct {
	records [][]string
	next    int
}

func (s *recordSource) Read() ([]string, error) {
	if s.next >= len(s.records) {
		return nil, io.EOF
	}
	s.next++
	return s.records[s.next-1], nil
}

func (s *recordSource) ReadAll() ([][]string, error) {
	rest := s.records[s.next:]
	s.next = len(s.records)
	return rest, nil
}

// parse reads the CSV structure: header, records and their line numbers. It
// reports structural problems (bad quoting, wrong field counts, header
// problems) and keeps going so that every row gets checked.
func parse(r io.Reader, name string) (*table, diag.List) {
	t := &table{columns: map[string]bool{}}
	var problems diag.List
	fileProblem := func(line int, column, format string, args ...any) {
		problems = append(problems, diag.Problem{Severity: diag.SeverityError, File: name, Line: line, Column: column, Message: fmt.Sprintf(format, args...)})
	}

	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1

	var records [][]string
	var lines []int
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				fileProblem(pe.StartLine, "", "the row is not valid CSV: %v (quote a field that contains commas or quotes, and double any quote inside it)", pe.Err)
				continue
			}
			fileProblem(0, "", "read CSV: %v", err)
			break
		}
		line, _ := cr.FieldPos(0)
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		records = append(records, rec)
		lines = append(lines, line)
	}
	if len(records) == 0 {
		if len(problems) == 0 {
			fileProblem(0, "", "the file is empty: it needs a header row (%s) and one row per machine", strings.Join(RequiredColumns, ","))
		}
		return t, problems
	}

	header := records[0]
	headerLine := lines[0]
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	all := append(append([]string{}, RequiredColumns...), OptionalColumns...)
	known := map[string]bool{}
	for _, c := range all {
		known[c] = true
	}
	for i, h := range header {
		switch {
		case h == "":
			fileProblem(headerLine, "", "header field %d is empty: every column needs a name", i+1)
		case t.columns[h]:
			fileProblem(headerLine, h, "column %q appears twice in the header", h)
		case !known[h]:
			problems = append(problems, diag.Problem{Severity: diag.SeverityWarning, File: name, Line: headerLine, Column: h,
				Message: fmt.Sprintf("unknown column %q is ignored (known columns: %s)", h, strings.Join(all, ", "))})
		}
		t.columns[h] = true
	}
	for _, c := range RequiredColumns {
		if !t.columns[c] {
			hint := ""
			for h := range t.columns {
				if strings.EqualFold(strings.ReplaceAll(h, " ", "_"), c) {
					hint = fmt.Sprintf(" (the header has %q: column names are lower-case with underscores)", h)
				}
			}
			fileProblem(headerLine, c, "required column %q is missing from the header%s", c, hint)
		}
	}

	// Rows whose field count differs from the header cannot be mapped to columns.
	src := &recordSource{records: [][]string{header}}
	var rowLines []int
	for i, rec := range records[1:] {
		if len(rec) != len(header) {
			fileProblem(lines[i+1], "", "the row has %d fields but the header has %d: add or remove commas so every row has one field per column", len(rec), len(header))
			continue
		}
		src.records = append(src.records, rec)
		rowLines = append(rowLines, lines[i+1])
	}
	if len(rowLines) == 0 {
		if !problems.HasErrors() {
			fileProblem(headerLine, "", "no machines: add one row per machine below the header")
		}
		return t, problems
	}
	var rows []csvRow
	if err := gocsv.UnmarshalCSV(src, &rows); err != nil {
		fileProblem(0, "", "decode rows: %v", err)
		return t, problems
	}
	t.rows = rows
	t.lines = rowLines
	return t, problems
}
