package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"cairn/api"
	"cairn/storage"
)

const keysPrefix = "/v2/keys"

// keyRequest is a parsed and validated /v2/keys request (spec §3).
type keyRequest struct {
	key       string // normalised, clamped at the root [D-2]
	value     string // first "value" ("" when absent)
	prevValue string // first "prevValue"; never "" when given (201)
	prevIndex uint64
	waitIndex uint64
	ttl       uint64 // seconds; meaningful when hasTTL
	hasTTL    bool   // "ttl" given and non-empty

	recursive, sorted, wait, dir, quorum, stream, noValueOnSuccess bool

	prevExist    bool
	hasPrevExist bool // "prevExist" given
	refresh      bool // "refresh" given and true
}

// Validation error causes of spec §7.1.
const (
	causeBadPrevIndex = `invalid value for "prevIndex"`
	causeBadWaitIndex = `invalid value for "waitIndex"`
	causeBadTTL       = `invalid value for "ttl"`
	causeBadPrevExist = "invalid value for prevExist"
	causeBadRefresh   = "invalid value for refresh"
	causeWaitNotGET   = `"wait" can only be used with GET requests`
	causeEmptyPrevVal = `"prevValue" cannot be empty`
	causeRefreshValue = "A value was provided on a refresh"
	causeRefreshNoTTL = "No TTL value set"
)

// boolParams are validated in this order (spec §3.4 step 5).
var boolParams = [...]string{"recursive", "sorted", "wait", "dir", "quorum", "stream"}

// parseKeyRequest parses and validates r in etcd's exact order (spec §3.4,
// steps 2–11). The method has been checked already, and r.Body has been
// limited by limitBody. Every rejection is an *api.Error with index 0.
func parseKeyRequest(r *http.Request) (keyRequest, *api.Error) {
	var kr keyRequest
	// Step 2: the form. ParseForm reads the body only for PUT/POST (and
	// PATCH) with a form media type; its error texts are etcd's causes.
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return kr, bodyTooLarge(mbe.Limit)
		}
		return kr, api.NewError(api.EcodeInvalidForm, err.Error(), 0)
	}
	if !strings.HasPrefix(r.URL.Path, keysPrefix) {
		return kr, api.NewError(api.EcodeInvalidForm, "incorrect key prefix", 0)
	}
	kr.key = keyPath(r.URL.Path[len(keysPrefix):])
	form := r.Form

	var err error
	// Steps 3–4: indexes.
	if kr.prevIndex, err = formUint(form, "prevIndex"); err != nil {
		return kr, api.NewError(api.EcodeIndexNaN, causeBadPrevIndex, 0)
	}
	if kr.waitIndex, err = formUint(form, "waitIndex"); err != nil {
		return kr, api.NewError(api.EcodeIndexNaN, causeBadWaitIndex, 0)
	}
	// Step 5: booleans.
	flags := [...]*bool{&kr.recursive, &kr.sorted, &kr.wait, &kr.dir, &kr.quorum, &kr.stream}
	for i, name := range boolParams {
		if *flags[i], err = formBool(form, name); err != nil {
			return kr, api.NewError(api.EcodeInvalidField, `invalid value for "`+name+`"`, 0)
		}
	}
	// Step 6: wait on a non-GET.
	if kr.wait && r.Method != http.MethodGet {
		return kr, api.NewError(api.EcodeInvalidField, causeWaitNotGET, 0)
	}
	// Step 7: an empty prevValue.
	var hasPrevValue bool
	kr.prevValue, hasPrevValue = formFirst(form, "prevValue")
	if hasPrevValue && kr.prevValue == "" {
		return kr, api.NewError(api.EcodePrevValueRequired, causeEmptyPrevVal, 0)
	}
	// Step 8: noValueOnSuccess.
	if kr.noValueOnSuccess, err = formBool(form, "noValueOnSuccess"); err != nil {
		return kr, api.NewError(api.EcodeInvalidField, `invalid value for "noValueOnSuccess"`, 0)
	}
	// Step 9: ttl, when non-empty; too large for int64 nanoseconds [D-6].
	if s, _ := formFirst(form, "ttl"); s != "" {
		kr.ttl, err = strconv.ParseUint(s, 10, 64)
		if err != nil || kr.ttl > uint64(api.MaxTTLSeconds) {
			return kr, api.NewError(api.EcodeTTLNaN, causeBadTTL, 0)
		}
		kr.hasTTL = true
	}
	// Step 10: prevExist, tracking absent as "not given".
	if s, ok := formFirst(form, "prevExist"); ok {
		if kr.prevExist, err = strconv.ParseBool(s); err != nil {
			return kr, api.NewError(api.EcodeInvalidField, causeBadPrevExist, 0)
		}
		kr.hasPrevExist = true
	}
	// Step 11: refresh, then its own rules.
	if s, ok := formFirst(form, "refresh"); ok {
		if kr.refresh, err = strconv.ParseBool(s); err != nil {
			return kr, api.NewError(api.EcodeInvalidField, causeBadRefresh, 0)
		}
	}
	kr.value, _ = formFirst(form, "value")
	if kr.refresh {
		if kr.value != "" {
			return kr, api.NewError(api.EcodeRefreshValue, causeRefreshValue, 0)
		}
		if !kr.hasTTL {
			return kr, api.NewError(api.EcodeRefreshTTLRequired, causeRefreshNoTTL, 0)
		}
	}
	return kr, nil
}

// formFirst returns the first value of name; body values precede query
// values in r.Form, so the body wins (spec §3.2).
func formFirst(form url.Values, name string) (string, bool) {
	vs, ok := form[name]
	if !ok || len(vs) == 0 {
		return "", ok
	}
	return vs[0], true
}

// formBool parses an optional boolean (absent = false) with
// strconv.ParseBool's spellings; an empty value is an error.
func formBool(form url.Values, name string) (bool, error) {
	s, ok := formFirst(form, name)
	if !ok {
		return false, nil
	}
	return strconv.ParseBool(s)
}

// formUint parses an optional unsigned decimal (absent = 0): digits only, no
// sign, no spaces, must fit in uint64.
func formUint(form url.Values, name string) (uint64, error) {
	s, ok := formFirst(form, name)
	if !ok {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// keyPath turns the decoded part of the URL path after /v2/keys into a key:
// repeated slashes collapse, "." segments drop, ".." removes the previous
// segment and is clamped at the root [D-2], a trailing slash is dropped. The
// result always starts with "/" and is "/" for the root.
func keyPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p) // allocation-free when p is already clean
}

// cmd builds the replicated command for a write (spec §4.2–4.4). now stamps
// the TTL at the edge: Expiration = now + ttl seconds, saturating at the
// int64 limit; the command carries now too, the instant its event's TTLs
// are shown as of.
func (kr *keyRequest) cmd(method string, now time.Time) storage.Cmd {
	c := storage.Cmd{Path: kr.key, Now: now.UnixNano()}
	switch method {
	case http.MethodDelete:
		if kr.prevIndex > 0 || kr.prevValue != "" {
			c.Op, c.PrevValue, c.PrevIndex = storage.OpCAD, kr.prevValue, kr.prevIndex
		} else {
			c.Op, c.Dir, c.Recursive = storage.OpDelete, kr.dir, kr.recursive
		}
		return c
	case http.MethodPost:
		c.Op, c.Dir = storage.OpCreateInOrder, kr.dir
	default: // PUT
		switch {
		case kr.hasPrevExist && !kr.prevExist:
			// create ignores prevValue, prevIndex and refresh.
			c.Op, c.Dir = storage.OpCreate, kr.dir
		case kr.prevIndex > 0 || kr.prevValue != "":
			// compare-and-swap ignores dir.
			c.Op, c.PrevValue, c.PrevIndex, c.Refresh = storage.OpCAS, kr.prevValue, kr.prevIndex, kr.refresh
		case kr.hasPrevExist: // prevExist=true without conditions
			c.Op, c.Dir, c.Refresh = storage.OpUpdate, kr.dir, kr.refresh
		default:
			c.Op, c.Dir, c.Refresh = storage.OpSet, kr.dir, kr.refresh
		}
	}
	if !c.Dir || c.Op == storage.OpUpdate {
		c.Value = kr.value // a directory has no value
	}
	if kr.hasTTL {
		c.Expiration = expiration(now, kr.ttl)
	}
	return c
}

// expiration is now + ttl seconds in unix nanoseconds, saturating at the
// int64 limit, and never 0 (which would mean "no TTL").
func expiration(now time.Time, ttl uint64) int64 {
	const maxNanos = 1<<63 - 1
	n := now.UnixNano()
	d := int64(ttl) * int64(time.Second) // ttl ≤ MaxTTLSeconds: no overflow
	if n > 0 && d > maxNanos-n {
		return maxNanos
	}
	if e := n + d; e != 0 {
		return e
	}
	return 1
}

// bodyTooLarge is the 413 answer of [D-10].
func bodyTooLarge(limit int64) *api.Error {
	e := api.NewError(api.EcodeInvalidForm, "request body exceeds "+strconv.FormatInt(limit, 10)+" bytes", 0)
	e.Status = http.StatusRequestEntityTooLarge
	return e
}
