package server_test

import (
	"testing"
	"time"
)

// TestTemplateMatcher keeps the golden matcher honest: each placeholder must
// reject what it should reject, or every spec test could pass vacuously.
func TestTemplateMatcher(t *testing.T) {
	now := time.Date(2026, 11, 25, 7, 32, 22, 0, time.UTC)
	newTP := func() *tmpl {
		return &tmpl{delta: -3, mark: 100, exps: map[string]string{}, nums: map[string]uint64{},
			vars: map[string]string{"id": "abc"}, sent: now, receivd: now.Add(10 * time.Millisecond)}
	}
	cases := []struct {
		name, want, got string
		ok              bool
	}{
		{"index shift", `"i":{{i 4}}`, `"i":1`, true},
		{"index shift wrong", `"i":{{i 4}}`, `"i":4`, false},
		{"key name", `/q/{{k 17}}`, `/q/00000000000000000014`, true},
		{"mark", `{{m 2}}/{{mk 1}}`, `102/00000000000000000101`, true},
		{"var", `{{id}}`, `abc`, true},
		{"exact only", `abc`, `abcd`, false},
		{"prefix only", `abc`, `xabc`, false},
		{"newline matters", "a\n", "a", false},
		{"ttl in range", `{{ttl 1 2}}`, `2`, true},
		{"ttl out of range", `{{ttl 1 2}}`, `3`, false},
		{"ttl negative", `{{ttl 0 2}}`, `-1`, false},
		{"exp near sent+2s", `{{exp e +2}}`, `2026-11-25T07:32:24.0045Z`, true},
		{"exp far from sent+2s", `{{exp e +2}}`, `2026-11-25T07:32:34Z`, false},
		{"exp not canonical", `{{exp e}}`, `2026-11-25T07:32:24.500Z`, false},
		{"exp repeated equal", `{{exp e}} {{exp e}}`, `2026-11-25T07:32:24.5Z 2026-11-25T07:32:24.5Z`, true},
		{"exp repeated different", `{{exp e}} {{exp e}}`, `2026-11-25T07:32:24.5Z 2026-11-25T07:32:24.6Z`, false},
		{"n repeated different", `{{n x}}/{{n x}}`, `1/2`, false},
		{"any stops at quotes", `"{{any}}"`, `"a"b"`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := newTP().match(c.want, c.got)
			if (err == nil) != c.ok {
				t.Errorf("match(%q, %q) = %v, want ok=%v", c.want, c.got, err, c.ok)
			}
		})
	}
}
