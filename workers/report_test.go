package workers

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// reportRun runs a report straight through in steps of step rows.
func reportRun(a ReportArgs, step int) (Report, error) {
	it, err := NewReport(a)
	if err != nil {
		return Report{}, err
	}
	for {
		done, err := it.Step(step)
		if err != nil {
			return it.Result(), err
		}
		if done {
			return it.Result(), nil
		}
	}
}

// reportGroupOf builds a ReportGroup from alternating sum column names and values.
func reportGroupOf(key string, count int64, sums ...any) ReportGroup {
	g := ReportGroup{Key: key, Count: count, Sums: map[string]float64{}}
	for i := 0; i < len(sums); i += 2 {
		g.Sums[sums[i].(string)] = sums[i+1].(float64)
	}
	return g
}

func TestReport(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		csv     string
		groupBy string
		sum     []string
		want    Report
	}{
		{
			name: "basic", csv: "region,amount,qty\nnorth,10,1\nsouth,5.5,2\nnorth,2,3\n",
			groupBy: "region", sum: []string{"amount", "qty"},
			want: Report{Rows: 3, Groups: []ReportGroup{
				reportGroupOf("north", 2, "amount", 12.0, "qty", 4.0),
				reportGroupOf("south", 1, "amount", 5.5, "qty", 2.0),
			}},
		},
		{
			name:    "quoted fields with commas quotes and newlines",
			csv:     "region,note,amount\n\"north, east\",\"multi\nline, note\",1\n\"say \"\"hi\"\"\",x,2\n\"north, east\",\"\",3\n",
			groupBy: "region", sum: []string{"amount"},
			want: Report{Rows: 3, Groups: []ReportGroup{
				reportGroupOf("north, east", 2, "amount", 4.0),
				reportGroupOf(`say "hi"`, 1, "amount", 2.0),
			}},
		},
		{
			name: "crlf", csv: "k,v\r\nx,1\r\ny,2\r\n\"x\",3\r\n",
			groupBy: "k", sum: []string{"v"},
			want: Report{Rows: 3, Groups: []ReportGroup{reportGroupOf("x", 2, "v", 4.0), reportGroupOf("y", 1, "v", 2.0)}},
		},
		{
			name: "bom", csv: "\ufeffk,v\nx,1\n",
			groupBy: "k", sum: []string{"v"},
			want: Report{Rows: 1, Groups: []ReportGroup{reportGroupOf("x", 1, "v", 1.0)}},
		},
		{
			name: "bom before quoted header", csv: "\ufeff\"k\",\"v\"\r\nx,1\r\n",
			groupBy: "k", sum: []string{"v"},
			want: Report{Rows: 1, Groups: []ReportGroup{reportGroupOf("x", 1, "v", 1.0)}},
		},
		{
			name: "no trailing newline and blank lines", csv: "k,v\n\nx,1\n\n\ny,2",
			groupBy: "k", sum: []string{"v"},
			want: Report{Rows: 2, Groups: []ReportGroup{reportGroupOf("x", 1, "v", 1.0), reportGroupOf("y", 1, "v", 2.0)}},
		},
		{
			name: "empty and spaced numbers", csv: "k,v,w\nx,,1\nx, 3 ,\nx,-1.5e1,0x1p4\n",
			groupBy: "k", sum: []string{"v", "w"},
			want: Report{Rows: 3, Groups: []ReportGroup{reportGroupOf("x", 3, "v", -12.0, "w", 17.0)}},
		},
		{
			name: "count only", csv: "k,v\nb,x\na,y\nb,z\n",
			groupBy: "k",
			want:    Report{Rows: 3, Groups: []ReportGroup{reportGroupOf("a", 1), reportGroupOf("b", 2)}},
		},
		{
			name: "group by a summed column", csv: "k\n1\n1\n2\n",
			groupBy: "k", sum: []string{"k"},
			want: Report{Rows: 3, Groups: []ReportGroup{reportGroupOf("1", 2, "k", 2.0), reportGroupOf("2", 1, "k", 2.0)}},
		},
		{
			name: "header only", csv: "k,v\n",
			groupBy: "k", sum: []string{"v"},
			want: Report{Groups: []ReportGroup{}},
		},
		{
			name: "header without newline", csv: "k,v",
			groupBy: "k", sum: []string{"v"},
			want: Report{Groups: []ReportGroup{}},
		},
		{
			name: "spaced header names and verbatim keys", csv: "k, v\n a,1\na,2\n,3\n",
			groupBy: "k", sum: []string{"v"},
			want: Report{Rows: 3, Groups: []ReportGroup{reportGroupOf("", 1, "v", 3.0), reportGroupOf(" a", 1, "v", 1.0), reportGroupOf("a", 1, "v", 2.0)}},
		},
		{
			name: "keys sorted bytewise", csv: "k\nÉ\nz\nA\na\n",
			groupBy: "k",
			want:    Report{Rows: 4, Groups: []ReportGroup{reportGroupOf("A", 1), reportGroupOf("a", 1), reportGroupOf("z", 1), reportGroupOf("É", 1)}},
		},
		{
			name: "duplicate header uses first", csv: "k,v,v\nx,1,100\n",
			groupBy: "k", sum: []string{"v"},
			want: Report{Rows: 1, Groups: []ReportGroup{reportGroupOf("x", 1, "v", 1.0)}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.want.GroupBy = tc.groupBy
			tc.want.Sum = append([]string{}, tc.sum...)
			for _, step := range []int{1, 2, 1000} {
				got, err := reportRun(ReportArgs{CSV: tc.csv, GroupBy: tc.groupBy, Sum: tc.sum}, step)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("step %d:\n got %+v\nwant %+v", step, got, tc.want)
				}
			}
		})
	}
}

func TestReportErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    ReportArgs
		want    []string // substrings of the error message
		atStep  bool     // the error comes from Step, not NewReport
		rowsBef int64    // rows counted before a Step error
	}{
		{name: "unknown group_by", args: ReportArgs{CSV: "a,b\n1,2\n", GroupBy: "nope"}, want: []string{`group_by column "nope"`}},
		{name: "unknown sum column", args: ReportArgs{CSV: "a,b\n1,2\n", GroupBy: "a", Sum: []string{"b", "missing"}}, want: []string{`sum column "missing"`}},
		{name: "group_by required", args: ReportArgs{CSV: "a,b\n", Sum: []string{"b"}}, want: []string{"group_by is required"}},
		{name: "duplicate sum column", args: ReportArgs{CSV: "a,b\n", GroupBy: "a", Sum: []string{"b", "b"}}, want: []string{`"b" listed twice`}},
		{name: "empty csv", args: ReportArgs{GroupBy: "a"}, want: []string{"no header row"}},
		{name: "blank csv", args: ReportArgs{CSV: "\n\n", GroupBy: "a"}, want: []string{"no header row"}},
		{name: "bad quote in header", args: ReportArgs{CSV: "a,b\"c\n", GroupBy: "a"}, want: []string{"header row", "bare"}},
		{name: "invalid utf-8", args: ReportArgs{CSV: "a,b\n\xff,1\n", GroupBy: "a"}, want: []string{"UTF-8"}},
		{
			name: "bad number", args: ReportArgs{CSV: "k,v\nx,1\n\"y\nz\",abc\n", GroupBy: "k", Sum: []string{"v"}},
			want: []string{"data row 2", "line 4", `column "v"`, `"abc"`}, atStep: true, rowsBef: 1,
		},
		{
			name: "bad number after blank lines and crlf", args: ReportArgs{CSV: "k,v\r\n\r\nx,1\r\n\r\nx,1 2\r\n", GroupBy: "k", Sum: []string{"v"}},
			want: []string{"data row 2", "line 5", `column "v"`}, atStep: true, rowsBef: 1,
		},
		{name: "NaN", args: ReportArgs{CSV: "k,v\nx,NaN\n", GroupBy: "k", Sum: []string{"v"}}, want: []string{"data row 1", "not a finite number"}, atStep: true},
		{name: "Inf", args: ReportArgs{CSV: "k,v\nx,-Inf\n", GroupBy: "k", Sum: []string{"v"}}, want: []string{"data row 1"}, atStep: true},
		{name: "out of range", args: ReportArgs{CSV: "k,v\nx,1e400\n", GroupBy: "k", Sum: []string{"v"}}, want: []string{"data row 1"}, atStep: true},
		{name: "thousands separator", args: ReportArgs{CSV: "k,v\nx,\"1,000\"\n", GroupBy: "k", Sum: []string{"v"}}, want: []string{`"1,000"`}, atStep: true},
		{
			name: "sum overflow", args: ReportArgs{CSV: "k,v\nx,1e308\ny,1e308\nx,1e308\n", GroupBy: "k", Sum: []string{"v"}},
			want: []string{"data row 3", "overflows"}, atStep: true, rowsBef: 2,
		},
		{
			name: "missing field", args: ReportArgs{CSV: "k,v,w\nx,1,2\ny,3\n", GroupBy: "k", Sum: []string{"v"}},
			want: []string{"data row 2", "line 3", "wrong number of fields", "header has 3"}, atStep: true, rowsBef: 1,
		},
		{
			name: "extra field", args: ReportArgs{CSV: "k,v\nx,1,2\n", GroupBy: "k", Sum: []string{"v"}},
			want: []string{"data row 1", "line 2", "wrong number of fields"}, atStep: true,
		},
		{
			name: "bare quote in data", args: ReportArgs{CSV: "k,v\nx,1\nx\"y,2\n", GroupBy: "k", Sum: []string{"v"}},
			want: []string{"data row 2", "line 3", "bare"}, atStep: true, rowsBef: 1,
		},
		{
			name: "unterminated quote", args: ReportArgs{CSV: "k,v\nx,1\n\"x,2\n", GroupBy: "k", Sum: []string{"v"}},
			want: []string{"data row 2"}, atStep: true, rowsBef: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			it, err := NewReport(tc.args)
			if !tc.atStep {
				if err == nil {
					t.Fatal("NewReport succeeded, want error")
				}
				wantPermanentErr(t, err, tc.want)
				return
			}
			if err != nil {
				t.Fatalf("NewReport: %v", err)
			}
			_, err = it.Step(1000)
			wantPermanentErr(t, err, tc.want)
			if rows, _ := it.Progress(); rows != tc.rowsBef {
				t.Errorf("rows counted = %d, want %d", rows, tc.rowsBef)
			}
			// The error is sticky, and the checkpoint resumes right before
			// the bad row, which fails again.
			if _, err2 := it.Step(1); err2 != err {
				t.Errorf("second Step error = %v, want the same %v", err2, err)
			}
			cp, err := it.Checkpoint()
			if err != nil {
				t.Fatalf("Checkpoint: %v", err)
			}
			it2, err := ResumeReport(tc.args, cp)
			if err != nil {
				t.Fatalf("ResumeReport: %v", err)
			}
			_, err = it2.Step(1000)
			wantPermanentErr(t, err, tc.want)
		})
	}
}

func wantPermanentErr(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	var pe *PermanentError
	if !errors.As(err, &pe) {
		t.Errorf("error %v (%T) is not a *PermanentError", err, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestReportStepAndProgress(t *testing.T) {
	t.Parallel()
	a := ReportArgs{CSV: "k,v\nx,1\ny,2\nx,3\n", GroupBy: "k", Sum: []string{"v"}}
	it, err := NewReport(a)
	if err != nil {
		t.Fatal(err)
	}
	if rows, pct := it.Progress(); rows != 0 || pct != 0 {
		t.Errorf("initial progress = %d, %v; want 0, 0", rows, pct)
	}
	if _, err := it.Step(0); err == nil {
		t.Error("Step(0) succeeded, want error")
	}
	steps := []struct {
		n        int
		wantDone bool
		wantRows int64
		wantPct  float64
	}{
		{n: 1, wantRows: 1, wantPct: 100.0 / 3},
		{n: 1, wantRows: 2, wantPct: 200.0 / 3},
		{n: 1, wantDone: true, wantRows: 3, wantPct: 100}, // ends exactly at the input's end
		{n: 5, wantDone: true, wantRows: 3, wantPct: 100},
	}
	for i, s := range steps {
		done, err := it.Step(s.n)
		rows, pct := it.Progress()
		if err != nil || done != s.wantDone || rows != s.wantRows || pct != s.wantPct {
			t.Errorf("step %d: done %v, err %v, progress %d %v%%; want done %v, %d %v%%",
				i, done, err, rows, pct, s.wantDone, s.wantRows, s.wantPct)
		}
	}
	// A header-only input is done before any step.
	it, err = NewReport(ReportArgs{CSV: "k,v\n", GroupBy: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if done, err := it.Step(1); !done || err != nil {
		t.Errorf("header only: Step = %v, %v; want done", done, err)
	}
	if _, pct := it.Progress(); pct != 100 {
		t.Errorf("header only: percent = %v, want 100", pct)
	}
}

func TestResumeReportInvalid(t *testing.T) {
	t.Parallel()
	a := ReportArgs{CSV: "k,v\nx,1\ny,2\n", GroupBy: "k", Sum: []string{"v"}}
	it, err := NewReport(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := it.Step(1); err != nil {
		t.Fatal(err)
	}
	good, err := it.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	var st ReportState
	if err := json.Unmarshal(good, &st); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(s *ReportState)) []byte {
		s := st
		s.Groups = map[string]*ReportAgg{}
		for k, g := range st.Groups {
			c := *g
			c.Sums = append([]float64{}, g.Sums...)
			s.Groups[k] = &c
		}
		f(&s)
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name       string
		args       ReportArgs
		checkpoint []byte
		want       string
	}{
		{name: "not json", args: a, checkpoint: []byte("{"), want: "invalid checkpoint"},
		{name: "other csv", args: ReportArgs{CSV: a.CSV + "z,3\n", GroupBy: "k", Sum: []string{"v"}}, checkpoint: good, want: "different arguments"},
		{name: "other sum columns", args: ReportArgs{CSV: a.CSV, GroupBy: "k", Sum: []string{"k"}}, checkpoint: good, want: "different arguments"},
		{name: "other group_by", args: ReportArgs{CSV: a.CSV, GroupBy: "v", Sum: []string{"v"}}, checkpoint: good, want: "different arguments"},
		{name: "offset in header", args: a, checkpoint: edit(func(s *ReportState) { s.Offset = 1 }), want: "offset"},
		{name: "offset past end", args: a, checkpoint: edit(func(s *ReportState) { s.Offset = 1000 }), want: "offset"},
		{name: "rows mismatch", args: a, checkpoint: edit(func(s *ReportState) { s.Rows = 5 }), want: "add up"},
		{name: "sums length", args: a, checkpoint: edit(func(s *ReportState) { s.Groups["x"].Sums = nil }), want: "malformed group"},
		{name: "null group", args: a, checkpoint: edit(func(s *ReportState) { s.Groups["x"] = nil }), want: "malformed group"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ResumeReport(tc.args, tc.checkpoint)
			wantPermanentErr(t, err, []string{tc.want})
		})
	}
	if _, err := ResumeReport(a, good); err != nil {
		t.Errorf("ResumeReport(good checkpoint): %v", err)
	}
}

// genReportCSV generates a CSV of n data rows with awkward content (quoted
// keys and notes with commas, quotes and newlines, CRLF and LF, blank lines,
// empty and spaced numbers) and the report it must produce, computed
// independently.
func genReportCSV(rng *rand.Rand, n int) (ReportArgs, Report) {
	keys := []string{"", "plain", "with,comma", `with "quotes"`, "multi\nline", " spaced ", "ünïcødé", "日本"}
	for i := len(keys); i < 200; i++ {
		keys = append(keys, "k"+strconv.Itoa(i))
	}
	quote := func(s string) string {
		if strings.ContainsAny(s, ",\"\r\n ") || s == "" && rng.IntN(2) == 0 {
			return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
		}
		return s
	}
	num := func() string {
		switch rng.IntN(6) {
		case 0:
			return ""
		case 1:
			return strconv.Itoa(rng.IntN(2000) - 1000)
		case 2:
			return " " + strconv.FormatFloat(rng.NormFloat64()*1e3, 'f', 2, 64) + " "
		case 3:
			return strconv.FormatFloat(rng.Float64(), 'g', -1, 64)
		case 4:
			return strconv.FormatFloat(rng.NormFloat64()*1e12, 'e', 6, 64)
		}
		return strconv.FormatFloat(rng.ExpFloat64(), 'f', 3, 64)
	}
	type agg struct {
		count  int64
		amount float64
		qty    float64
	}
	model := map[string]*agg{}
	var b strings.Builder
	b.WriteString("\ufeffid,key,note,amount,qty\r\n")
	for i := range n {
		key := keys[rng.IntN(len(keys))]
		amount, qty := num(), num()
		note := []string{"", "x", "a, b", "line1\nline2", `"q"`}[rng.IntN(5)]
		eol := "\n"
		if rng.IntN(2) == 0 {
			eol = "\r\n"
		}
		if rng.IntN(100) == 0 {
			b.WriteString(eol) // blank line, skipped
		}
		fmt.Fprintf(&b, "%d,%s,%s,%s,%s%s", i, quote(key), quote(note), quote(amount), qty, eol)
		g := model[key]
		if g == nil {
			g = &agg{}
			model[key] = g
		}
		g.count++
		g.amount += reportParseModel(amount)
		g.qty += reportParseModel(qty)
	}
	a := ReportArgs{CSV: b.String(), GroupBy: "key", Sum: []string{"amount", "qty"}}
	want := Report{GroupBy: "key", Sum: []string{"amount", "qty"}, Rows: int64(n), Groups: []ReportGroup{}}
	for _, k := range keys {
		if g := model[k]; g != nil {
			want.Groups = append(want.Groups, reportGroupOf(k, g.count, "amount", g.amount, "qty", g.qty))
		}
	}
	sortReportGroups(want.Groups)
	return a, want
}

func reportParseModel(s string) float64 {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic(err)
	}
	return v
}

func sortReportGroups(gs []ReportGroup) {
	for i := 1; i < len(gs); i++ {
		for j := i; j > 0 && gs[j].Key < gs[j-1].Key; j-- {
			gs[j], gs[j-1] = gs[j-1], gs[j]
		}
	}
}

// TestReportCheckpointRoundTrip checks that running a report straight
// through equals running it in random-size steps with a Checkpoint → JSON →
// ResumeReport round trip between every step: exactly equal results (float
// sums bit for bit) and checkpoints, both equal to an independent model.
func TestReportCheckpointRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	a, want := genReportCSV(rng, 50_000)

	straight, err := NewReport(a)
	if err != nil {
		t.Fatal(err)
	}
	if done, err := straight.Step(1 << 30); !done || err != nil {
		t.Fatalf("straight Step = %v, %v", done, err)
	}
	if got := straight.Result(); !reflect.DeepEqual(got, want) {
		t.Fatalf("straight result differs from the model:\n got %+v\nwant %+v", got.Groups[:3], want.Groups[:3])
	}
	wantCP, err := straight.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if len(wantCP) > len(a.CSV)/20 {
		t.Errorf("checkpoint is %d bytes for %d bytes of input, want it small", len(wantCP), len(a.CSV))
	}

	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 99))
			it, err := NewReport(a)
			if err != nil {
				t.Fatal(err)
			}
			var prevRows int64
			var prevPct float64
			steps := 0
			for done := false; !done; steps++ {
				n := 1 + rng.IntN(2000)
				if rng.IntN(3) == 0 {
					n = 1 + rng.IntN(5)
				}
				if done, err = it.Step(n); err != nil {
					t.Fatalf("step %d: %v", steps, err)
				}
				rows, pct := it.Progress()
				if rows < prevRows || pct < prevPct || pct > 100 || (!done && rows-prevRows != int64(n)) {
					t.Fatalf("step %d of %d rows: progress %d %v%% after %d %v%%", steps, n, rows, pct, prevRows, prevPct)
				}
				prevRows, prevPct = rows, pct
				cp, err := it.Checkpoint()
				if err != nil {
					t.Fatal(err)
				}
				if it, err = ResumeReport(a, cp); err != nil {
					t.Fatalf("step %d: ResumeReport: %v", steps, err)
				}
			}
			if got := it.Result(); !reflect.DeepEqual(got, want) {
				t.Fatalf("stepped result differs after %d steps", steps)
			}
			cp, err := it.Checkpoint()
			if err != nil || string(cp) != string(wantCP) {
				t.Fatalf("final checkpoint differs from the straight run's (err %v)", err)
			}
			if done, err := it.Step(1); !done || err != nil {
				t.Fatalf("Step after done = %v, %v", done, err)
			}
		})
	}
}

// BenchmarkReport runs a report over 1M generated rows (1000 groups, two
// sum columns), straight through and with a checkpoint/resume every 100k
// rows.
func BenchmarkReport(b *testing.B) {
	const rows = 1_000_000
	var sb strings.Builder
	sb.WriteString("id,region,amount,qty\n")
	for i := range rows {
		fmt.Fprintf(&sb, "%d,region-%d,%d.%02d,%d\n", i, i*7919%1000, i%5000, i%100, i%13)
	}
	a := ReportArgs{CSV: sb.String(), GroupBy: "region", Sum: []string{"amount", "qty"}}
	for _, every := range []int{0, 100_000} {
		name := "straight"
		if every > 0 {
			name = fmt.Sprintf("checkpoint_every_%d", every)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(a.CSV)))
			b.ReportAllocs()
			for b.Loop() {
				it, err := NewReport(a)
				if err != nil {
					b.Fatal(err)
				}
				for done := false; !done; {
					if done, err = it.Step(100_000); err != nil {
						b.Fatal(err)
					}
					if every > 0 && !done {
						cp, err := it.Checkpoint()
						if err != nil {
							b.Fatal(err)
						}
						if it, err = ResumeReport(a, cp); err != nil {
							b.Fatal(err)
						}
					}
				}
				if r := it.Result(); r.Rows != rows {
					b.Fatalf("rows = %d", r.Rows)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
