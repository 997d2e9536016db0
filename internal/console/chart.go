package console

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/event"
)

// chart is a stacked bar chart drawn as inline SVG by the templates.
type chart struct {
	Label    string // title
	Summary  string // text for screen readers: the total of each series
	Width    int
	Height   int
	Bars     []bar
	Ticks    []tick // x-axis labels
	Legend   []legendItem
	Max      int
	MaxY     float64 // y of the top grid line
	Baseline float64
}

type bar struct {
	X, Y, W, H float64
	Class      string
	Fill       string // a colour for SVG's fill attribute (CSP allows no inline style)
	Title      string
}

type tick struct {
	X     float64
	Label string
}

type legendItem struct {
	Label string
	Class string
	Fill  string
}

const (
	chartW      = 640
	chartH      = 180
	chartTop    = 10
	chartBottom = 30
	chartLeft   = 36
	chartRight  = 20
)

// series is one stack layer: its label, CSS class or fill, and a value
// per bucket.
type series struct {
	label  string
	class  string
	fill   string
	values []int
}

// stacked lays out series over n buckets starting at since, each bucket
// long.
func stacked(label string, since time.Time, bucket time.Duration, n int, ss []series) *chart {
	c := &chart{Label: label, Width: chartW, Height: chartH}
	totals := make([]int, n)
	for _, s := range ss {
		for i, v := range s.values {
			totals[i] += v
		}
	}
	c.Max = max(slices.Max(append(totals, 1)), 1)
	plotH := float64(chartH - chartTop - chartBottom)
	c.Baseline = float64(chartH - chartBottom)
	c.MaxY = chartTop
	step := float64(chartW-chartLeft-chartRight) / float64(n)
	w := math.Max(step*0.8, 1)
	for i := range n {
		x := chartLeft + float64(i)*step + (step-w)/2
		y := c.Baseline
		start := since.Add(time.Duration(i) * bucket)
		for _, s := range ss {
			v := s.values[i]
			if v == 0 {
				continue
			}
			h := plotH * float64(v) / float64(c.Max)
			y -= h
			c.Bars = append(c.Bars, bar{X: x, Y: y, W: w, H: h, Class: s.class, Fill: s.fill,
				Title: fmt.Sprintf("%s %s: %d", start.UTC().Format(tickFormat(bucket)), s.label, v)})
		}
		if every := max(n/8, 1); i%every == 0 {
			c.Ticks = append(c.Ticks, tick{X: x + w/2, Label: start.UTC().Format(tickFormat(bucket))})
		}
	}
	var parts []string
	for _, s := range ss {
		c.Legend = append(c.Legend, legendItem{Label: s.label, Class: s.class, Fill: s.fill})
		total := 0
		for _, v := range s.values {
			total += v
		}
		parts = append(parts, fmt.Sprintf("%s %d", s.label, total))
	}
	c.Summary = label + ": " + strings.Join(parts, ", ")
	return c
}

func tickFormat(bucket time.Duration) string {
	if bucket < 24*time.Hour {
		return "01-02 15h"
	}
	return "01-02"
}

// buckets is how many buckets a timeline covers up to now.
func buckets(tl api.ReportTimeline, now time.Time) (time.Duration, int) {
	b := time.Duration(tl.Bucket) * time.Second
	if b <= 0 {
		return time.Hour, 0
	}
	n := int(now.Sub(tl.Since)/b) + 1
	return b, min(max(n, 1), 400)
}

// rolloutChart: a rollout's successes and failures per bucket.
func rolloutChart(label, okLabel, failLabel string, tl api.ReportTimeline, now time.Time) *chart {
	b, n := buckets(tl, now)
	ok := series{label: okLabel, class: "ok", values: make([]int, n)}
	bad := series{label: failLabel, class: "fail", values: make([]int, n)}
	for _, cnt := range tl.Counts {
		i := int(cnt.Start.Sub(tl.Since) / b)
		if i < 0 || i >= n {
			continue
		}
		switch {
		case cnt.Event == event.HealthOK:
			ok.values[i] += cnt.Devices
		case slices.Contains(event.ReleaseFailures, cnt.Event):
			bad.values[i] += cnt.Devices
		}
	}
	return stacked(label, tl.Since, b, n, []series{ok, bad})
}

// palette colours versions in the fleet chart (colour-blind safe).
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"}

// versionsChart: per bucket, the devices that reported each version
// healthy.
func versionsChart(label string, tl api.ReportTimeline, now time.Time) *chart {
	b, n := buckets(tl, now)
	byVersion := map[string][]int{}
	var versions []string
	for _, cnt := range tl.Counts {
		if cnt.Event != event.HealthOK {
			continue
		}
		i := int(cnt.Start.Sub(tl.Since) / b)
		if i < 0 || i >= n {
			continue
		}
		v, ok := byVersion[cnt.Version]
		if !ok {
			v = make([]int, n)
			versions = append(versions, cnt.Version)
		}
		v[i] += cnt.Devices
		byVersion[cnt.Version] = v
	}
	slices.Sort(versions)
	var ss []series
	for i, v := range versions {
		ss = append(ss, series{label: v, fill: palette[i%len(palette)], values: byVersion[v]})
	}
	return stacked(label, tl.Since, b, n, ss)
}
