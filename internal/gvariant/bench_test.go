package gvariant

import (
	"fmt"
	"testing"
)

func syntheticDirtree(files int) []any {
	csum := make([]byte, 32)
	fs := make([]any, files)
	for i := range fs {
		fs[i] = []any{fmt.Sprintf("file-%05d.txt", i), csum}
	}
	ds := make([]any, 10)
	for i := range ds {
		ds[i] = []any{fmt.Sprintf("dir-%02d", i), csum, csum}
	}
	return []any{fs, ds}
}

func BenchmarkMarshalDirtree(b *testing.B) {
	tree := syntheticDirtree(200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(dirtreeType, tree); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalDirtree(b *testing.B) {
	data, err := Marshal(dirtreeType, syntheticDirtree(200))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(dirtreeType, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalCommit(b *testing.B) {
	data := readFixture(b, "commit1.commit")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(commitType, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalFileHeader(b *testing.B) {
	h := []any{uint64(12), uint32(0), uint32(0), uint32(0xa4810000), uint32(0), "", []any{}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(filezType, h); err != nil {
			b.Fatal(err)
		}
	}
}

func syntheticSummary(refs int) []any {
	csum := make([]byte, 32)
	rs := make([]any, refs)
	for i := range rs {
		rs[i] = []any{fmt.Sprintf("mxos/10/x86_64/ref-%05d", i), []any{uint64(512), csum, []DictEntry{
			{"ostree.commit.timestamp", Variant{"t", uint64(1704067200)}},
			{"ostree.commit.version", Variant{"s", "10.1"}},
		}}}
	}
	return []any{rs, []DictEntry{{"ostree.summary.mode", Variant{"s", "archive-z2"}}}}
}

func BenchmarkMarshalSummary(b *testing.B) {
	s := syntheticSummary(5000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(summaryType, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalSummary(b *testing.B) {
	data, err := Marshal(summaryType, syntheticSummary(5000))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(summaryType, data); err != nil {
			b.Fatal(err)
		}
	}
}
