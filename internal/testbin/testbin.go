// Package testbin builds the cairn binary once per test process, for tests
// and benchmarks that run members as real processes.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var (
	once sync.Once
	path string
	err  error
)

// Cairn builds the module's main package (moduleDir is the repository root
// relative to the calling test's directory, e.g. "..") into a temporary
// directory and returns the binary's path. Later calls reuse the build.
func Cairn(moduleDir string) (string, error) {
	once.Do(func() {
		dir, mkErr := os.MkdirTemp("", "cairn-test-bin")
		if mkErr != nil {
			err = mkErr
			return
		}
		path = filepath.Join(dir, "cairn")
		cmd := exec.Command("go", "build", "-o", path, moduleDir)
		cmd.Stderr = os.Stderr
		if runErr := cmd.Run(); runErr != nil {
			err = fmt.Errorf("build cairn: %w", runErr)
		}
	})
	return path, err
}
