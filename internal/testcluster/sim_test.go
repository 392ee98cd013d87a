package testcluster

import (
	"flag"
	"fmt"
	"testing"

	"go.uber.org/goleak"
)

var (
	seedFlag    = flag.Uint64("seed", 0, "TestSimulation runs only this seed")
	seedsFlag   = flag.Int("seeds", 0, "TestSimulation runs seeds 1..N for each cluster size (make soak); -seed wins")
	membersFlag = flag.Int("members", 0, "TestSimulation runs only this cluster size (3 or 5)")
	stepsFlag   = flag.Int("steps", 0, "random steps per run before healing (0: the default)")
	stepLogFlag = flag.Bool("steplog", false, "log every step of every run (use with -seed and -v)")
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestSimulation runs the deterministic simulation for a range of seeds on
// 3- and 5-member clusters. See the package comment for what a run does
// and what it checks.
func TestSimulation(t *testing.T) {
	sizes := []struct{ members, seeds int }{{3, 20}, {5, 12}}
	if testing.Short() {
		sizes = []struct{ members, seeds int }{{3, 3}, {5, 1}}
	}
	for _, size := range sizes {
		if *membersFlag != 0 && size.members != *membersFlag {
			continue
		}
		var seeds []uint64
		switch {
		case *seedFlag != 0:
			seeds = []uint64{*seedFlag}
		case *seedsFlag > 0:
			for s := range uint64(*seedsFlag) {
				seeds = append(seeds, s+1)
			}
		default:
			for s := range uint64(size.seeds) {
				seeds = append(seeds, s+1)
			}
		}
		t.Run(fmt.Sprint("members=", size.members), func(t *testing.T) {
			for _, seed := range seeds {
				t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
					opts := Options{Seed: seed, Members: size.members, Steps: *stepsFlag, Logf: t.Logf}
					if *stepLogFlag {
						opts.Tracef = t.Logf
					}
					if _, err := Run(t, opts); err != nil {
						t.Fatalf("%v\nreplay: go test ./internal/testcluster -run '^TestSimulation$' -seed=%d -members=%d -v (add -steplog to log every step)",
							err, seed, size.members)
					}
				})
			}
		})
	}
}

// TestSimulationReplays runs one seed twice: the same steps, deliveries
// and outcome, or a failing seed could not be replayed.
func TestSimulationReplays(t *testing.T) {
	opts := Options{Seed: 7, Members: 3, Steps: 1500}
	first, err := Run(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Run(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatalf("seed %d ran differently twice:\n%+v\n%+v", opts.Seed, first, second)
	}
	t.Logf("%+v", first)
}
