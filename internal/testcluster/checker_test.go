package testcluster

import (
	"strings"
	"testing"

	"cairn/storage"
)

// TestCheckerReportsViolations feeds the checker fabricated histories,
// one violation each, and a clean one: the checks can fail, and do not
// fail on what is allowed.
func TestCheckerReportsViolations(t *testing.T) {
	get := func(state map[string]string) func(string) (string, bool) {
		return func(key string) (string, bool) {
			v, ok := state[key]
			return v, ok
		}
	}
	cases := []struct {
		name    string
		history func(k *Checker)
		want    string // a part of the error; "" for a clean history
	}{
		{"clean", func(k *Checker) {
			k.Leader(2, 1)
			k.Leader(2, 1)
			k.Leader(3, 2)
			k.Apply(1, 5, "cmd a")
			k.Apply(2, 5, "cmd a")
			k.AppliedIndex(1, 4)
			k.AppliedIndex(1, 5)
			k.Durable(1, 4)
			k.Restarted(1, 4) // behind what it applied, not behind what it synced
			k.Apply(1, 5, "cmd a")
			k.AppliedIndex(1, 5)
			k.StateDigest(1, 5, "d5")
			k.StateDigest(2, 5, "d5")
			k.StateDigest(2, 6, "d6")
			k.Acked("/a", "1")
			k.HasAcked(2, 1, "after healing", get(map[string]string{"/a": "1"}))
		}, ""},
		{"two leaders in one term", func(k *Checker) {
			k.Leader(3, 1)
			k.Leader(3, 2)
		}, "two leaders in term 3: members 1 and 2"},
		{"different commands at one index", func(k *Checker) {
			k.Apply(1, 7, "cmd a")
			k.Apply(2, 7, "cmd b")
		}, `applied "cmd b" at index 7, member 1 (restart 0) applied "cmd a" there`},
		{"a different command at one index after a restart", func(k *Checker) {
			k.Apply(1, 7, "cmd a")
			k.Restarted(1, 6)
			k.Apply(1, 7, "no command")
		}, `member 1 (restart 1) applied "no command" at index 7`},
		{"applied index backwards without a restart", func(k *Checker) {
			k.AppliedIndex(2, 9)
			k.AppliedIndex(2, 8)
		}, "applied index went back from 9 to 8 without a restart"},
		{"restart below the synced applied index", func(k *Checker) {
			k.AppliedIndex(2, 9)
			k.Durable(2, 7)
			k.Restarted(2, 6)
		}, "restarted (restart 1) at applied index 6, below the synced applied index 7"},
		{"different states at one applied index", func(k *Checker) {
			k.StateDigest(1, 12, "aaaa")
			k.StateDigest(3, 12, "bbbb")
		}, "member 3's state at applied index 12 differs from member 1's"},
		{"an acknowledged write missing", func(k *Checker) {
			k.Acked("/a", "1")
			k.Acked("/b", "2")
			k.HasAcked(2, 2, "after healing", get(map[string]string{"/a": "1"}))
		}, "after healing: member 2 lacks 1 acknowledged writes: [/b]"},
		{"an acknowledged write with another value", func(k *Checker) {
			k.Acked("/a", "1")
			k.HasAcked(3, 1, "read barrier", get(map[string]string{"/a": "0"}))
		}, `read barrier: member 3 holds "0" at acknowledged key /a, want "1"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := NewChecker()
			tc.history(k)
			err := k.Err()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("clean history reported: %v", err)
			case tc.want == "":
			case err == nil || !k.Failed():
				t.Fatalf("no violation reported, want %q", tc.want)
			case !strings.Contains(err.Error(), tc.want):
				t.Fatalf("reported %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestSimulationSeesDivergence runs a cluster in which one member applies
// one command differently from what was committed: the run must fail on
// its state (digests or acknowledged values), with the seed in the error.
func TestSimulationSeesDivergence(t *testing.T) {
	opts := Options{Seed: 3, Members: 3, Steps: 1000}
	corrupted := false
	opts.corrupt = func(member, index uint64, cmd *storage.Cmd) {
		if member == 2 && index == 10 {
			cmd.Value = "corrupted"
			corrupted = true
		}
	}
	_, err := Run(t, opts)
	if !corrupted {
		t.Fatal("member 2 never applied a command at index 10: pick another index")
	}
	if err == nil {
		t.Fatal("a member that applied a different value went unnoticed")
	}
	if !strings.Contains(err.Error(), "seed 3, 3 members") ||
		!(strings.Contains(err.Error(), "state at applied index") || strings.Contains(err.Error(), `holds "corrupted"`)) {
		t.Fatalf("unexpected error: %v", err)
	}
	t.Log(err)
}
