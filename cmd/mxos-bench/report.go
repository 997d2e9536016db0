package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Report is everything one run measured; --json writes it as is.
type Report struct {
	Command  string    `json:"command"`
	Settings string    `json:"settings"`
	Started  time.Time `json:"started"`
	Machine  Machine   `json:"machine"`
	Rows     []Row     `json:"rows"`
	Notes    []string  `json:"notes"`
}

// Machine says where the figures were taken.
type Machine struct {
	CPUs      int    `json:"cpus"`
	OS        string `json:"os"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel,omitempty"`
	Nginx     string `json:"nginx,omitempty"`
	Ostree    string `json:"ostree,omitempty"`
	// CPUModel is /proc/cpuinfo's model name; LoadStart and LoadEnd are
	// /proc/loadavg's 1, 5 and 15-minute averages when the run started
	// and ended: other work on the machine moves every figure.
	CPUModel  string `json:"cpu_model,omitempty"`
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

// Direction says which way a figure is better.
type Direction string

const (
	Higher Direction = "higher"
	Lower  Direction = "lower"
)

// Row is one figure measured on both sides.
type Row struct {
	Bench  string    `json:"bench"` // serve, publish, pull
	Name   string    `json:"name"`
	Unit   string    `json:"unit"`
	Peer   string    `json:"peer"` // what ours is compared with
	Ours   float64   `json:"ours"`
	Theirs float64   `json:"theirs"`
	Ratio  float64   `json:"ratio"` // ours / theirs
	Better Direction `json:"better"`
	// Target is the ratio to reach (>= for Higher, <= for Lower); 0 means
	// the row is information only.
	Target float64 `json:"target,omitempty"`
	// Absolute rows compare Ours itself, in Unit, with Target (>= for
	// Higher, strictly < for Lower) instead of the ratio; Theirs is shown
	// for reference.
	Absolute bool `json:"absolute,omitempty"`
	// Pass is set for rows with a target.
	Pass *bool `json:"pass,omitempty"`
	// Samples are every round's figures, in the order measured.
	OursSamples   []float64 `json:"ours_samples,omitempty"`
	TheirsSamples []float64 `json:"theirs_samples,omitempty"`
}

// newRow builds a row from per-round samples, reporting their medians.
func newRow(bench, name, unit, peer string, better Direction, target float64, ours, theirs []float64) Row {
	r := Row{
		Bench: bench, Name: name, Unit: unit, Peer: peer, Better: better, Target: target,
		Ours: median(ours), Theirs: median(theirs), OursSamples: ours, TheirsSamples: theirs,
	}
	if r.Theirs != 0 {
		r.Ratio = r.Ours / r.Theirs
	}
	if target > 0 {
		pass := r.Ratio >= target
		if better == Lower {
			pass = r.Ratio > 0 && r.Ratio <= target
		}
		r.Pass = &pass
	}
	return r
}

// newAbsoluteRow builds a row whose target is a limit on our own figure
// (e.g. p99 < 10 ms), with the peer's figure for reference.
func newAbsoluteRow(bench, name, unit, peer string, better Direction, limit float64, ours, theirs []float64) Row {
	r := newRow(bench, name, unit, peer, better, 0, ours, theirs)
	r.Target, r.Absolute = limit, true
	pass := r.Ours >= limit
	if better == Lower {
		pass = r.Ours < limit
	}
	r.Pass = &pass
	return r
}

// formatValue prints a figure with a precision that suits its size.
func formatValue(v float64) string {
	switch {
	case v >= 10000:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func groupThousands(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// writeHeader prints what the report is about before anything runs.
func (r *Report) writeHeader(w io.Writer) {
	fmt.Fprintf(w, "$ %s\n", r.Command)
	fmt.Fprintf(w, "settings: %s\n", r.Settings)
	m := r.Machine
	fmt.Fprintf(w, "machine: %d CPUs", m.CPUs)
	if m.CPUModel != "" {
		fmt.Fprintf(w, " (%s)", m.CPUModel)
	}
	fmt.Fprintf(w, ", %s, %s", m.OS, m.GoVersion)
	if m.Kernel != "" {
		fmt.Fprintf(w, ", Linux %s", m.Kernel)
	}
	if m.Nginx != "" {
		fmt.Fprintf(w, "; %s", m.Nginx)
	}
	if m.Ostree != "" {
		fmt.Fprintf(w, "; ostree %s", m.Ostree)
	}
	fmt.Fprintf(w, "\nstarted: %s, load average %s\n\n", r.Started.Format(time.RFC3339), m.LoadStart)
}

// writeTable prints the rows and notes.
func (r *Report) writeTable(w io.Writer) error {
	cells := [][]string{{"benchmark", "unit", "ours", "peer", "ratio", "better", "target", "result", "peer is"}}
	for _, row := range r.Rows {
		target, result := "-", "info"
		if row.Pass != nil {
			op := ">="
			if row.Better == Lower {
				op = "<="
			}
			target = fmt.Sprintf("%s %.2fx", op, row.Target)
			if row.Absolute {
				if row.Better == Lower {
					op = "<"
				}
				target = fmt.Sprintf("%s %g %s", op, row.Target, row.Unit)
			}
			result = "MISS"
			if *row.Pass {
				result = "PASS"
			}
		}
		cells = append(cells, []string{
			row.Name, row.Unit, formatValue(row.Ours), formatValue(row.Theirs),
			fmt.Sprintf("%.2fx", row.Ratio), string(row.Better) + " is better", target, result, row.Peer,
		})
	}
	rightAligned := map[int]bool{2: true, 3: true, 4: true}
	widths := make([]int, len(cells[0]))
	for _, c := range cells {
		for i, s := range c {
			widths[i] = max(widths[i], len(s))
		}
	}
	var b strings.Builder
	for _, c := range cells {
		for i, s := range c {
			gap := strings.Repeat(" ", widths[i]-len(s))
			if rightAligned[i] {
				b.WriteString(gap + s)
			} else if i < len(c)-1 {
				b.WriteString(s + gap)
			} else {
				b.WriteString(s)
			}
			if i < len(c)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteString("\n")
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("writing table: %w", err)
	}
	passed, targets := 0, 0
	for _, row := range r.Rows {
		if row.Pass != nil {
			targets++
			if *row.Pass {
				passed++
			}
		}
	}
	fmt.Fprintf(w, "\nratio = ours/peer, median of the rounds; %d of %d targets met.\n", passed, targets)
	r.Machine.LoadEnd = loadAverage()
	fmt.Fprintf(w, "ended: %s, load average %s (started at %s)\n", time.Now().UTC().Format(time.RFC3339), r.Machine.LoadEnd, r.Machine.LoadStart)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	return nil
}

// writeJSON writes the report to path.
func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

// loadAverage is /proc/loadavg's 1, 5 and 15-minute load averages, or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
