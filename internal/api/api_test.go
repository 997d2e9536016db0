package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// mutation is a named change to a valid request; ok says whether the
// request stays valid.
type mutation[T any] struct {
	name string
	mut  func(*T)
	ok   bool
}

// checkMutations validates good changed by each mutation; a refusal
// must be a bad_request error.
func checkMutations[T any](t *testing.T, good T, validate func(*T) error, cases []mutation[T]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := good
			c.mut(&r)
			err := validate(&r)
			if (err == nil) != c.ok {
				t.Fatalf("Validate() = %v", err)
			}
			if err != nil && !errors.Is(err, &Error{Code: CodeBadRequest}) {
				t.Fatalf("error %v is not bad_request", err)
			}
		})
	}
}

func TestCheckRequestValidate(t *testing.T) {
	good := CheckRequest{DeviceID: "lab-01", Arch: "x86_64", Channel: "stable", BootedCommit: strings.Repeat("a", 64)}
	checkMutations(t, good, (*CheckRequest).Validate, []mutation[CheckRequest]{
		{"good", func(*CheckRequest) {}, true},
		{"no-booted-commit", func(r *CheckRequest) { r.BootedCommit = "" }, true},
		{"no-device", func(r *CheckRequest) { r.DeviceID = "" }, false},
		{"long-device", func(r *CheckRequest) { r.DeviceID = strings.Repeat("x", 129) }, false},
		{"no-arch", func(r *CheckRequest) { r.Arch = "" }, false},
		{"no-channel", func(r *CheckRequest) { r.Channel = "" }, false},
		{"short-commit", func(r *CheckRequest) { r.BootedCommit = "abc" }, false},
		{"upper-commit", func(r *CheckRequest) { r.BootedCommit = strings.Repeat("A", 64) }, false},
	})
}

func TestReportValidate(t *testing.T) {
	r := ReportRequest{DeviceID: "d", Seq: 1, Version: "10.0.1", Event: EventHealthOK}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	noSeq := r
	noSeq.Seq = 0
	if err := noSeq.Validate(); !errors.Is(err, &Error{Code: CodeBadRequest}) {
		t.Fatalf("report without seq: %v", err)
	}
	r.Event = "exploded"
	if err := r.Validate(); err == nil {
		t.Fatal("unknown event accepted")
	}
	r.Event, r.Error = EventFailed, strings.Repeat("e", 5000)
	if err := r.Validate(); !errors.Is(err, &Error{Code: CodeTooLarge}) {
		t.Fatalf("long error text: %v", err)
	}
}

func TestErrorJSONAndStatus(t *testing.T) {
	b, _ := json.Marshal(ErrorBody{Error: Errorf(CodeUnknownChannel, "no channel %q", "beta")})
	if string(b) != `{"error":{"code":"unknown_channel","message":"no channel \"beta\""}}` {
		t.Fatalf("json = %s", b)
	}
	statuses := map[Code]int{
		CodeBadRequest: 400, CodeUnauthorized: 401, CodeForbidden: 403, CodeNotFound: 404,
		CodeDuplicateVersion: 409, CodeTooLarge: 413, CodeInternal: 500, CodeUnavailable: 503, Code("new"): 500,
	}
	for c, want := range statuses {
		if got := c.HTTPStatus(); got != want {
			t.Errorf("%s → %d, want %d", c, got, want)
		}
	}
	_ = http.StatusOK
}
