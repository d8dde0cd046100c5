package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured.
type Report struct {
	Date      string     `json:"date"`
	Host      string     `json:"host"`
	CPUs      int        `json:"cpus"`
	GoVersion string     `json:"go_version"`
	GoMilter  string     `json:"go_milter"`
	Load      LoadInfo   `json:"load"`
	Subjects  []*subject `json:"subjects"`
	Levels    []Level    `json:"levels"`
}

// LoadInfo describes the load every subject got.
type LoadInfo struct {
	Messages           int      `json:"messages_per_run"`
	Duration           string   `json:"duration_per_run"`
	Warmup             int      `json:"warmup_messages"`
	Rounds             int      `json:"rounds"`
	MessageSizes       []int    `json:"message_sizes"`
	Headers            []int    `json:"headers"`
	Corpus             string   `json:"corpus,omitempty"`
	Rcpts              int      `json:"rcpts"`
	MessagesPerSession int      `json:"messages_per_session"`
	Socket             string   `json:"socket"`
	Client             string   `json:"client"`
	Login              string   `json:"login,omitempty"`
	Macros             []string `json:"macros,omitempty"`
}

// Level is one concurrency level: every subject under the same load.
type Level struct {
	Concurrency int             `json:"concurrency"`
	Results     []SubjectResult `json:"results"`
}

// SubjectResult is one subject at one level: the median over rounds, each
// round, and the ratios to each baseline (medians of per-round ratios).
type SubjectResult struct {
	Subject  string       `json:"subject"`
	Baseline bool         `json:"baseline"`
	Summary  *Result      `json:"summary"`
	Rounds   []*Result    `json:"rounds"`
	Versus   []Comparison `json:"versus,omitempty"`
}

// Comparison holds the ratios subject/baseline measured in the same rounds.
type Comparison struct {
	Baseline   string  `json:"baseline"`
	Throughput float64 `json:"messages_per_sec_ratio"`
	P50        float64 `json:"p50_ratio"`
	P99        float64 `json:"p99_ratio"`
	CPUPerMsg  float64 `json:"cpu_per_message_ratio,omitempty"`
}

// Failed reports whether any measurement had errors other than refusals.
func (r *Report) Failed() bool {
	for _, l := range r.Levels {
		for _, s := range l.Results {
			for _, res := range s.Rounds {
				if res.Failed() {
					return true
				}
			}
		}
	}
	return false
}

func newReport(o *options, msgs []*message, subjects []*subject) *Report {
	rep := &Report{
		Date:      time.Now().UTC().Format(time.RFC3339),
		Host:      hostname(),
		CPUs:      runtime.NumCPU(),
		GoVersion: runtime.Version(),
		GoMilter:  goMilterVersion(),
		Subjects:  subjects,
		Load: LoadInfo{
			Messages: o.messages, Duration: o.duration.String(), Warmup: o.warmup, Rounds: o.rounds,
			Corpus: o.corpus, Rcpts: o.rcpts, MessagesPerSession: o.perSession, Client: o.client.String(), Login: o.login,
		},
	}
	for _, m := range msgs {
		rep.Load.MessageSizes = append(rep.Load.MessageSizes, m.size)
		rep.Load.Headers = append(rep.Load.Headers, len(m.fields))
	}
	if len(subjects) > 0 {
		rep.Load.Socket = loopbackNote(subjects[0].network)
	}
	for _, m := range o.macros {
		rep.Load.Macros = append(rep.Load.Macros, m.name+"="+m.value)
	}
	return rep
}

func goMilterVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/d--j/go-milter" {
				return d.Version
			}
		}
	}
	return "unknown"
}

// summarizeSubject builds the result of subject i from its rounds and
// compares it with every baseline round by round.
func summarizeSubject(s *subject, rounds [][]*Result, i int, order []*subject) SubjectResult {
	sr := SubjectResult{Subject: s.Name, Baseline: s.Baseline, Rounds: rounds[i], Summary: medianResult(rounds[i])}
	for j, b := range order {
		if b == s || !b.Baseline {
			continue
		}
		var tp, p50, p99, cpu []float64
		for r := range rounds[i] {
			a, base := rounds[i][r], rounds[j][r]
			tp = append(tp, ratio(a.MessagesPerSec, base.MessagesPerSec))
			p50 = append(p50, ratio(a.Latency["message"].P50, base.Latency["message"].P50))
			p99 = append(p99, ratio(a.Latency["message"].P99, base.Latency["message"].P99))
			if a.Process != nil && base.Process != nil {
				cpu = append(cpu, ratio(a.Process.CPUPerMsg, base.Process.CPUPerMsg))
			}
		}
		sr.Versus = append(sr.Versus, Comparison{Baseline: b.Name, Throughput: median(tp), P50: median(p50), P99: median(p99), CPUPerMsg: median(cpu)})
	}
	return sr
}

// medianResult merges rounds: counts add up, rates and latencies are medians,
// the peak RSS is the highest.
func medianResult(rs []*Result) *Result {
	if len(rs) == 1 {
		return rs[0]
	}
	out := &Result{Outcomes: map[string]int{}, Errors: map[string]int{}, Modifications: map[string]int{}, Latency: map[string]LatencySummary{}}
	pick := func(f func(*Result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	for _, r := range rs {
		out.Messages += r.Messages
		out.Sessions += r.Sessions
		out.Seconds += r.Seconds
		for k, v := range r.Outcomes {
			out.Outcomes[k] += v
		}
		for k, v := range r.Errors {
			out.Errors[k] += v
		}
		for k, v := range r.Modifications {
			out.Modifications[k] += v
		}
		if out.FirstError == "" {
			out.FirstError = r.FirstError
		}
	}
	out.MessagesPerSec = pick(func(r *Result) float64 { return r.MessagesPerSec })
	out.LoadCPUPerMsg = pick(func(r *Result) float64 { return r.LoadCPUPerMsg })
	for _, name := range stageNames {
		var ls LatencySummary
		for _, r := range rs {
			ls.Count += r.Latency[name].Count
		}
		ls.Mean = pick(func(r *Result) float64 { return r.Latency[name].Mean })
		ls.P50 = pick(func(r *Result) float64 { return r.Latency[name].P50 })
		ls.P90 = pick(func(r *Result) float64 { return r.Latency[name].P90 })
		ls.P99 = pick(func(r *Result) float64 { return r.Latency[name].P99 })
		ls.Max = pick(func(r *Result) float64 { return r.Latency[name].Max })
		out.Latency[name] = ls
	}
	if rs[0].Process != nil {
		ps := &ProcessStats{}
		for _, r := range rs {
			if r.Process == nil {
				continue
			}
			ps.CPUSeconds += r.Process.CPUSeconds
			ps.PeakRSSMiB = max(ps.PeakRSSMiB, r.Process.PeakRSSMiB)
			ps.PeakRSSCumulative = ps.PeakRSSCumulative || r.Process.PeakRSSCumulative
		}
		proc := func(f func(*ProcessStats) float64) float64 {
			return pick(func(r *Result) float64 {
				if r.Process == nil {
					return 0
				}
				return f(r.Process)
			})
		}
		ps.CPUPerMsg = proc(func(p *ProcessStats) float64 { return p.CPUPerMsg })
		ps.AllocPerMsgKiB = proc(func(p *ProcessStats) float64 { return p.AllocPerMsgKiB })
		ps.MallocsPerMsg = proc(func(p *ProcessStats) float64 { return p.MallocsPerMsg })
		out.Process = ps
	}
	return out
}

func writeJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeText prints the report as tables.
func writeText(w io.Writer, rep *Report) {
	l := rep.Load
	fmt.Fprintf(w, "tollgate-bench  %s  host %s  %d CPUs  %s  go-milter %s\n", rep.Date, rep.Host, rep.CPUs, rep.GoVersion, rep.GoMilter)
	msgDesc := fmt.Sprintf("%s messages", sizesText(l.MessageSizes, l.Headers))
	if l.Corpus != "" {
		msgDesc = fmt.Sprintf("corpus %s (%d messages, %s)", l.Corpus, len(l.MessageSizes), sizesText(l.MessageSizes, l.Headers))
	}
	fmt.Fprintf(w, "load: %s, %d rcpt, %d message/session, client %s, %s socket; %d messages or %s per run, warm-up %d, %d round(s)\n",
		msgDesc, l.Rcpts, l.MessagesPerSession, l.Client, l.Socket, l.Messages, l.Duration, l.Warmup, l.Rounds)
	fmt.Fprintln(w, "subjects:")
	for _, s := range rep.Subjects {
		kind := "target"
		if s.Baseline {
			kind = "null milter (go-milter NoOpMilter)"
			if s.InProcess {
				kind += ", in process"
			}
		}
		fmt.Fprintf(w, "  %-22s %s at %s\n", s.Name, kind, s.Address)
		if len(s.Command) > 0 {
			fmt.Fprintf(w, "  %-22s command: %s\n", "", strings.Join(s.Command, " "))
		}
		fmt.Fprintf(w, "  %-22s negotiates protocol: %s; actions: %s\n", "", s.Protocol, s.Actions)
	}
	for _, lv := range rep.Levels {
		fmt.Fprintf(w, "\nconcurrency %d\n", lv.Concurrency)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		width := 0
		for _, s := range lv.Results {
			width = max(width, len(s.Subject))
		}
		fmt.Fprintf(tw, "%-*s\tmessages\terrors\tmsg/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tcpu ms/msg\tpeak RSS MiB\talloc KiB/msg\tbench cpu ms/msg\t\n", width, "subject")
		for _, s := range lv.Results {
			r := s.Summary
			m := r.Latency["message"]
			cpu, rss, alloc := "-", "-", "-"
			if p := r.Process; p != nil {
				cpu = fmt.Sprintf("%.3f", p.CPUPerMsg)
				rss = fmt.Sprintf("%.1f", p.PeakRSSMiB)
				if p.AllocPerMsgKiB > 0 {
					alloc = fmt.Sprintf("%.1f", p.AllocPerMsgKiB)
				}
			}
			fmt.Fprintf(tw, "%-*s\t%d\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\t%s\t%.3f\t\n", width, s.Subject, r.Messages, errorCount(r),
				r.MessagesPerSec, m.P50, m.P90, m.P99, m.Max, cpu, rss, alloc, r.LoadCPUPerMsg)
		}
		tw.Flush()
		var cmp []string
		for _, s := range lv.Results {
			for _, c := range s.Versus {
				line := fmt.Sprintf("  %s / %s: msg/s x%.2f, p50 x%.2f, p99 x%.2f", s.Subject, c.Baseline, c.Throughput, c.P50, c.P99)
				if c.CPUPerMsg > 0 {
					line += fmt.Sprintf(", cpu/msg x%.2f", c.CPUPerMsg)
				}
				cmp = append(cmp, line)
			}
		}
		if len(cmp) > 0 {
			fmt.Fprintln(w, "ratios (same run; medians of per-round ratios):")
			for _, c := range cmp {
				fmt.Fprintln(w, c)
			}
		}
		fmt.Fprintln(w, "latency by stage, ms: p50 / p90 / p99 / max")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "subject\t"+strings.Join(stageNames[:], "\t"))
		for _, s := range lv.Results {
			row := []string{s.Subject}
			for _, name := range stageNames {
				ls := s.Summary.Latency[name]
				if ls.Count == 0 {
					row = append(row, "-")
					continue
				}
				row = append(row, fmt.Sprintf("%s/%s/%s/%s", num(ls.P50), num(ls.P90), num(ls.P99), num(ls.Max)))
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
		for _, s := range lv.Results {
			r := s.Summary
			if len(r.Errors) > 0 || r.Outcomes["accept"] != r.Messages {
				fmt.Fprintf(w, "  %s: outcomes %s", s.Subject, countsText(r.Outcomes))
				if len(r.Errors) > 0 {
					fmt.Fprintf(w, "; errors %s", countsText(r.Errors))
				}
				if r.FirstError != "" {
					fmt.Fprintf(w, "; first: %s", r.FirstError)
				}
				fmt.Fprintln(w)
			}
			if len(r.Modifications) > 0 && r.Messages > 0 {
				fmt.Fprintf(w, "  %s: changes requested %s\n", s.Subject, countsText(r.Modifications))
			}
		}
	}
}

func errorCount(r *Result) int {
	n := 0
	for _, v := range r.Errors {
		n += v
	}
	return n
}

func countsText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// num prints a latency with 3 significant digits.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func sizesText(sizes, headers []int) string {
	if len(sizes) == 0 {
		return "no"
	}
	if len(sizes) == 1 {
		return fmt.Sprintf("%d-byte (%d headers)", sizes[0], headers[0])
	}
	lo, hi, sum := sizes[0], sizes[0], 0
	for _, s := range sizes {
		lo, hi, sum = min(lo, s), max(hi, s), sum+s
	}
	return fmt.Sprintf("%d..%d bytes, mean %d", lo, hi, sum/len(sizes))
}
