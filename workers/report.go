package workers

import (
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ReportArgs are the arguments of the report kind.
type ReportArgs struct {
	CSV     string   `json:"csv"`      // text with a header row
	GroupBy string   `json:"group_by"` // a column name
	Sum     []string `json:"sum"`      // column names to sum (numbers)
}

// Report is the result of the report kind: per distinct value of the GroupBy
// column, the number of rows and the sums of the Sum columns.
//
// Sums are float64, added in input order: integers are exact up to 2^53 and
// fractional values carry the usual binary rounding, so a sum of decimal
// amounts may differ from decimal arithmetic in the last digits.
type Report struct {
	GroupBy string        `json:"group_by"`
	Sum     []string      `json:"sum"`
	Rows    int64         `json:"rows"`   // data rows processed
	Groups  []ReportGroup `json:"groups"` // sorted by Key ascending
}

// ReportGroup is one group of a Report.
type ReportGroup struct {
	Key   string             `json:"key"`
	Count int64              `json:"count"`
	Sums  map[string]float64 `json:"sums"` // one entry per Report.Sum column
}

// ReportState is the checkpoint: the byte offset of the next unread data row
// plus the aggregate so far. It is JSON-serialisable and small relative to
// the input (one entry per group). Fingerprint identifies the arguments the
// state belongs to, so a checkpoint cannot be resumed against other input.
type ReportState struct {
	Offset      int64                 `json:"offset"`
	Rows        int64                 `json:"rows"`
	Groups      map[string]*ReportAgg `json:"groups"`
	Fingerprint uint32                `json:"fingerprint"`
}

// ReportAgg is the running aggregate of one group in a ReportState.
type ReportAgg struct {
	Count int64     `json:"count"`
	Sums  []float64 `json:"sums"` // in the order of ReportArgs.Sum
}

// ReportIter computes a report in steps of bounded size so that a long
// report can be checkpointed and resumed, possibly on another machine, with
// no row counted twice. Its memory is bounded by the number of groups (plus
// the input itself, held by the caller). It is not safe for concurrent use.
type ReportIter struct {
	args      ReportArgs
	nFields   int   // columns in the header row
	groupCol  int   // index of args.GroupBy
	sumCols   []int // indexes of args.Sum
	headerEnd int64 // offset of the first data row
	fp        uint32
	state     ReportState

	r    *csv.Reader // reads from base; nil until the first Step
	base int64
	vals []float64 // the current row's sum values
	done bool
	err  error // sticky permanent error
}

const reportBOM = "\ufeff"

var reportCRCTable = crc32.MakeTable(crc32.Castagnoli)

// NewReport validates args against the header row (unknown group_by/sum
// column → permanent error naming the column) and returns an iterator at the
// first data row.
//
// The CSV is RFC 4180 as read by encoding/csv: comma separated, quoted fields
// may contain commas, quotes ("") and newlines, CRLF or LF line ends, blank
// lines are skipped, a leading UTF-8 BOM is ignored. Every data row must have
// as many fields as the header. Columns are matched by exact name, else by
// name with surrounding spaces trimmed; the first matching column wins.
// Group keys are the group_by values verbatim. The input must be valid UTF-8
// (as any JSON string is), so that every group key survives a checkpoint.
func NewReport(a ReportArgs) (*ReportIter, error) {
	it, err := newReportIter(a)
	if err != nil {
		return nil, err
	}
	it.state = ReportState{
		Offset:      it.headerEnd,
		Groups:      make(map[string]*ReportAgg),
		Fingerprint: it.fp,
	}
	it.done = it.state.Offset >= int64(len(a.CSV))
	return it, nil
}

// ResumeReport continues from a checkpoint (state JSON as produced by
// Checkpoint) for the same args. A checkpoint that is malformed, inconsistent
// or made for other args is a permanent error.
func ResumeReport(a ReportArgs, checkpoint []byte) (*ReportIter, error) {
	it, err := newReportIter(a)
	if err != nil {
		return nil, err
	}
	var st ReportState
	if err := json.Unmarshal(checkpoint, &st); err != nil {
		return nil, Permanent(fmt.Errorf("report: invalid checkpoint: %w", err))
	}
	if err := it.validState(&st); err != nil {
		return nil, Permanent(fmt.Errorf("report: invalid checkpoint: %w", err))
	}
	if st.Groups == nil {
		st.Groups = make(map[string]*ReportAgg)
	}
	it.state = st
	it.done = st.Offset >= int64(len(a.CSV))
	return it, nil
}

// newReportIter parses and checks the header row and the arguments.
func newReportIter(a ReportArgs) (*ReportIter, error) {
	if a.GroupBy == "" {
		return nil, Permanent(errors.New("report: group_by is required"))
	}
	for i, s := range a.Sum {
		if slices.Contains(a.Sum[:i], s) {
			return nil, Permanent(fmt.Errorf("report: sum column %q listed twice", s))
		}
	}
	if !utf8.ValidString(a.CSV) {
		return nil, Permanent(errors.New("report: csv is not valid UTF-8"))
	}
	start := int64(0)
	if strings.HasPrefix(a.CSV, reportBOM) {
		start = int64(len(reportBOM))
	}
	r := csv.NewReader(strings.NewReader(a.CSV[start:]))
	header, err := r.Read()
	if err == io.EOF {
		return nil, Permanent(errors.New("report: csv has no header row"))
	}
	if err != nil {
		return nil, Permanent(fmt.Errorf("report: header row: %w", err))
	}
	it := &ReportIter{
		args:      a,
		nFields:   len(header),
		headerEnd: start + r.InputOffset(),
		sumCols:   make([]int, len(a.Sum)),
		vals:      make([]float64, len(a.Sum)),
		fp:        reportFingerprint(a),
	}
	if it.groupCol = reportColumn(header, a.GroupBy); it.groupCol < 0 {
		return nil, Permanent(fmt.Errorf("report: group_by column %q is not in the header", a.GroupBy))
	}
	for i, s := range a.Sum {
		if it.sumCols[i] = reportColumn(header, s); it.sumCols[i] < 0 {
			return nil, Permanent(fmt.Errorf("report: sum column %q is not in the header", s))
		}
	}
	return it, nil
}

// reportColumn returns the index of the first column named name, else of the
// first whose name equals it with spaces trimmed, else -1.
func reportColumn(header []string, name string) int {
	if i := slices.Index(header, name); i >= 0 {
		return i
	}
	name = strings.TrimSpace(name)
	return slices.IndexFunc(header, func(h string) bool { return strings.TrimSpace(h) == name })
}

// reportFingerprint is a CRC-32C of the arguments, each length-prefixed.
func reportFingerprint(a ReportArgs) uint32 {
	var crc uint32
	var buf [32 << 10]byte
	add := func(s string) {
		crc = crc32.Update(crc, reportCRCTable, binary.BigEndian.AppendUint64(buf[:0], uint64(len(s))))
		for len(s) > 0 {
			n := copy(buf[:], s)
			crc = crc32.Update(crc, reportCRCTable, buf[:n])
			s = s[n:]
		}
	}
	add(a.CSV)
	add(a.GroupBy)
	for _, s := range a.Sum {
		add(s)
	}
	return crc
}

// validState checks that st is a plausible state for its arguments.
func (it *ReportIter) validState(st *ReportState) error {
	if st.Fingerprint != it.fp {
		return errors.New("it was made for different arguments")
	}
	if st.Offset < it.headerEnd || st.Offset > int64(len(it.args.CSV)) {
		return fmt.Errorf("offset %d outside the data rows [%d, %d]", st.Offset, it.headerEnd, len(it.args.CSV))
	}
	var total int64
	for k, g := range st.Groups {
		if g == nil || g.Count < 1 || len(g.Sums) != len(it.args.Sum) {
			return fmt.Errorf("malformed group %q", k)
		}
		total += g.Count
	}
	if total != st.Rows {
		return fmt.Errorf("group counts add up to %d, not rows %d", total, st.Rows)
	}
	return nil
}

// Step processes up to n data rows; done reports whether the input is
// exhausted. n must be positive. An error in the input (bad CSV syntax, wrong
// field count, a sum value that is not a finite number, a sum overflowing
// float64) is a permanent error naming the data row (1-based, header
// excluded), its line and the column. The row in error is not counted, the
// state stays that of the rows before it, and Step keeps returning the error.
func (it *ReportIter) Step(n int) (done bool, err error) {
	if it.err != nil {
		return false, it.err
	}
	if it.done {
		return true, nil
	}
	if n <= 0 {
		return false, fmt.Errorf("report: Step(%d): n must be positive", n)
	}
	if it.r == nil {
		sr := strings.NewReader(it.args.CSV)
		if _, err := sr.Seek(it.state.Offset, io.SeekStart); err != nil {
			return false, err // cannot happen: Offset is checked
		}
		it.r = csv.NewReader(sr)
		it.r.FieldsPerRecord = it.nFields
		it.r.ReuseRecord = true
		it.base = it.state.Offset
	}
	for range n {
		rec, err := it.r.Read()
		if err == io.EOF {
			it.state.Offset = int64(len(it.args.CSV))
			it.done = true
			return true, nil
		}
		if err != nil {
			it.err = Permanent(it.rowError(err))
			return false, it.err
		}
		if err := it.add(rec); err != nil {
			it.err = Permanent(err)
			return false, it.err
		}
		it.state.Offset = it.base + it.r.InputOffset()
	}
	it.done = it.state.Offset >= int64(len(it.args.CSV))
	return it.done, nil
}

// add aggregates one data row. On error it changes nothing.
func (it *ReportIter) add(rec []string) error {
	for i, c := range it.sumCols {
		v, err := parseSumValue(rec[c])
		if err != nil {
			line, _ := it.r.FieldPos(c)
			return fmt.Errorf("report: data row %d (line %d), column %q: %w",
				it.state.Rows+1, it.absLine(line), it.args.Sum[i], err)
		}
		it.vals[i] = v
	}
	key := rec[it.groupCol]
	g := it.state.Groups[key]
	if g != nil {
		for i, v := range it.vals {
			if math.IsInf(g.Sums[i]+v, 0) {
				line, _ := it.r.FieldPos(it.sumCols[i])
				return fmt.Errorf("report: data row %d (line %d), column %q: sum of group %q overflows float64",
					it.state.Rows+1, it.absLine(line), it.args.Sum[i], key)
			}
		}
	} else {
		g = &ReportAgg{Sums: make([]float64, len(it.vals))}
		it.state.Groups[strings.Clone(key)] = g // do not retain the row's buffer
	}
	for i, v := range it.vals {
		g.Sums[i] += v
	}
	g.Count++
	it.state.Rows++
	return nil
}

// parseSumValue parses a value of a sum column: a float64 literal as accepted
// by strconv.ParseFloat, surrounding spaces ignored, empty meaning 0. NaN,
// infinities and out-of-range values are refused.
func parseSumValue(s string) (float64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a finite number", s)
	}
	return v, nil
}

// rowError describes a csv error of the row after the last one counted.
func (it *ReportIter) rowError(err error) error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return fmt.Errorf("report: data row %d: %w", it.state.Rows+1, err)
	}
	if errors.Is(pe.Err, csv.ErrFieldCount) {
		return fmt.Errorf("report: data row %d (line %d): %w: header has %d fields",
			it.state.Rows+1, it.absLine(pe.StartLine), pe.Err, it.nFields)
	}
	return fmt.Errorf("report: data row %d (line %d, column %d): %w",
		it.state.Rows+1, it.absLine(pe.Line), pe.Column, pe.Err)
}

// absLine converts a line number of the current reader, which started at
// it.base, to a 1-based line number of the whole input. It scans the input
// and is meant for error messages only.
func (it *ReportIter) absLine(line int) int {
	return strings.Count(it.args.CSV[:it.base], "\n") + line
}

// Checkpoint returns the JSON of the current state (see ReportState), from
// which ResumeReport continues after the last row counted.
func (it *ReportIter) Checkpoint() ([]byte, error) {
	return json.Marshal(&it.state)
}

// Progress returns rows processed and an estimate of percent done (0..100),
// by byte offset within the data rows.
func (it *ReportIter) Progress() (rows int64, percent float64) {
	total := int64(len(it.args.CSV)) - it.headerEnd
	if it.done || total <= 0 {
		return it.state.Rows, 100
	}
	return it.state.Rows, 100 * float64(it.state.Offset-it.headerEnd) / float64(total)
}

// Result returns the finished report: complete once Step has reported done,
// otherwise the report of the rows processed so far.
func (it *ReportIter) Result() Report {
	rep := Report{
		GroupBy: it.args.GroupBy,
		Sum:     append([]string{}, it.args.Sum...),
		Rows:    it.state.Rows,
		Groups:  make([]ReportGroup, 0, len(it.state.Groups)),
	}
	for _, k := range slices.Sorted(maps.Keys(it.state.Groups)) {
		g := it.state.Groups[k]
		sums := make(map[string]float64, len(it.args.Sum))
		for i, s := range it.args.Sum {
			sums[s] = g.Sums[i]
		}
		rep.Groups = append(rep.Groups, ReportGroup{Key: k, Count: g.Count, Sums: sums})
	}
	return rep
}
