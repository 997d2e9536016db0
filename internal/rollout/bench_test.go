package rollout

import (
	"testing"
	"time"
)

func BenchmarkBucket(b *testing.B) {
	for b.Loop() {
		Bucket("7f3c2a9e-5b1d-4c8e-9a0f-2d6b8e1c4f70", "stable/10.2")
	}
}

func BenchmarkDecide(b *testing.B) {
	in := base()
	in.Graph = Graph{Barriers: []string{"9.5", "10.0"}, DeadEnds: []DeadEnd{{Version: "9.1"}}}
	in.Now = testStart.Add(50 * time.Hour)
	in.Bucket = 0.3
	for b.Loop() {
		if !Decide(in).Offer {
			b.Fatal("not offered")
		}
	}
}
