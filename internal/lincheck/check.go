package lincheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// ArtifactsEnv names the directory failing checks write their files to;
// unset, they go to the test's t.TempDir() (removed when the test ends).
const ArtifactsEnv = "CAIRN_ARTIFACTS"

// Check checks ops against Model within timeout. On a violation it writes
// porcupine's HTML visualisation and the history as JSON to the artefact
// directory, prints both paths and fails the test. A check that runs out
// of time is logged and returns porcupine.Unknown without failing.
func Check(t testing.TB, ops []porcupine.Operation, timeout time.Duration) porcupine.CheckResult {
	t.Helper()
	start := time.Now()
	r := check(ops, timeout, func() string { return artifactDir(t) }, "lincheck-"+safeName(t.Name()))
	took := time.Since(start).Round(time.Millisecond)
	switch r.result {
	case porcupine.Ok:
		t.Logf("linearizable: %d operations checked in %v", len(ops), took)
	case porcupine.Unknown:
		t.Logf("linearizability check of %d operations timed out after %v: no verdict", len(ops), took)
	case porcupine.Illegal:
		for _, err := range r.errs {
			t.Log(err)
		}
		hint := ""
		if os.Getenv(ArtifactsEnv) == "" {
			hint = " (set " + ArtifactsEnv + " to keep them after the test)"
		}
		t.Errorf("history of %d operations is NOT linearizable: visualisation %s, history %s%s", len(ops), r.html, r.json, hint)
	}
	return r.result
}

type checkResult struct {
	result     porcupine.CheckResult
	html, json string
	errs       []error
}

// check runs porcupine and, on a violation, writes name.html and
// name.json into the directory dir returns.
func check(ops []porcupine.Operation, timeout time.Duration, dir func() string, name string) checkResult {
	res, info := porcupine.CheckOperationsVerbose(Model, ops, timeout)
	r := checkResult{result: res}
	if res != porcupine.Illegal {
		return r
	}
	base := filepath.Join(dir(), name)
	r.html, r.json = base+".html", base+".json"
	if err := porcupine.VisualizePath(Model, info, r.html); err != nil {
		r.errs = append(r.errs, fmt.Errorf("writing the visualisation: %w", err))
	}
	if err := WriteHistory(r.json, ops); err != nil {
		r.errs = append(r.errs, fmt.Errorf("writing the history: %w", err))
	}
	return r
}

func artifactDir(t testing.TB) string {
	if d := os.Getenv(ArtifactsEnv); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func safeName(s string) string { return unsafeChars.ReplaceAllString(s, "_") }

// jsonOp is an operation as WriteHistory stores it.
type jsonOp struct {
	ClientID int    `json:"client"`
	Input    Input  `json:"input"`
	Call     int64  `json:"call"`
	Output   Output `json:"output"`
	Return   int64  `json:"return"`
	Meta     string `json:"meta,omitempty"`
}

// WriteHistory stores ops as JSON, for ReadHistory to check again.
func WriteHistory(path string, ops []porcupine.Operation) error {
	out := make([]jsonOp, 0, len(ops))
	for _, op := range ops {
		meta, _ := op.Metadata.(string)
		out = append(out, jsonOp{op.ClientId, op.Input.(Input), op.Call, op.Output.(Output), op.Return, meta})
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// ReadHistory loads a history written by WriteHistory.
func ReadHistory(path string) ([]porcupine.Operation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var in []jsonOp
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ops := make([]porcupine.Operation, 0, len(in))
	for _, o := range in {
		ops = append(ops, porcupine.Operation{ClientId: o.ClientID, Input: o.Input, Call: o.Call, Output: o.Output, Return: o.Return, Metadata: o.Meta})
	}
	return ops, nil
}
