package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"cairn/api"
)

const (
	membersPrefix = "/v2/members"
	promoteSuffix = "promote" // POST /v2/members/<id>/promote (a Cairn extension)
	allowMembers  = "GET,POST,DELETE,PUT"
	msgInternal   = "Internal Server Error"
)

// serveMembers handles /v2/members and /v2/members/* (spec §9.1, §7.2).
func (rt *router) serveMembers(w http.ResponseWriter, r *http.Request) {
	setRoute(w, routeMembers)
	if !requireMethod(w, r, allowMembers, http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut) {
		return
	}
	w.Header()[api.HeaderClusterID] = rt.clusterIDHeader()
	sub := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, membersPrefix), "/")
	switch r.Method {
	case http.MethodGet:
		switch sub {
		case "":
			rt.listMembers(w, r)
		case "leader":
			rt.leaderMember(w, r)
		default:
			writeMessage(w, r, http.StatusNotFound, "Not found")
		}
	case http.MethodPost:
		if id, ok := strings.CutSuffix(sub, "/"+promoteSuffix); ok {
			rt.promoteMember(w, r, id)
			return
		}
		rt.addMember(w, r)
	case http.MethodDelete:
		rt.removeMember(w, r, sub)
	case http.MethodPut:
		rt.updateMember(w, r, sub)
	}
}

// writeJSONLine answers 200/201 with v as JSON plus a newline (members
// bodies, as json.Encoder writes them).
func writeJSONLine(w http.ResponseWriter, r *http.Request, status int, v any) {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	writeBody(w, r, status, hvJSON, b.Bytes())
}

func (rt *router) listMembers(w http.ResponseWriter, r *http.Request) {
	writeJSONLine(w, r, http.StatusOK, api.MemberList{Members: sortedMembers(rt.cluster.Members())})
}

func (rt *router) leaderMember(w http.ResponseWriter, r *http.Request) {
	lead := rt.raft.Status().Leader
	if lead != 0 {
		for _, m := range rt.cluster.Members() {
			if id, err := strconv.ParseUint(m.ID, 16, 64); err == nil && id == lead {
				writeJSONLine(w, r, http.StatusOK, wireMember(m))
				return
			}
		}
	}
	writeMessage(w, r, http.StatusServiceUnavailable, "During election")
}

func (rt *router) addMember(w http.ResponseWriter, r *http.Request) {
	var learner bool
	urls, ok := rt.decodePeerURLs(w, r, &learner)
	if !ok {
		return
	}
	if rt.opt.Members == nil {
		if rt.peerURLTaken(urls, 0) {
			writeMessage(w, r, http.StatusConflict, ErrPeerURLExists.Error())
			return
		}
		writeMessage(w, r, http.StatusInternalServerError, msgInternal)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), rt.opt.RequestTimeout)
	m, err := rt.opt.Members.AddMember(ctx, urls, learner)
	cancel()
	switch {
	case err == nil:
		writeJSONLine(w, r, http.StatusCreated, wireMember(m))
	case isMemberErr(err, ErrMemberIDExists):
		writeMessage(w, r, http.StatusConflict, ErrMemberIDExists.Error())
	case isMemberErr(err, ErrPeerURLExists):
		writeMessage(w, r, http.StatusConflict, ErrPeerURLExists.Error())
	case isMemberErr(err, ErrTooManyLearners):
		writeMessage(w, r, http.StatusPreconditionFailed, ErrTooManyLearners.Error())
	default:
		rt.memberFailure(w, r, err)
	}
}

// writeMemberIDError answers the errors of a request naming a member that
// is gone (410) or unknown (404), and reports whether err was one.
func writeMemberIDError(w http.ResponseWriter, r *http.Request, id uint64, err error) bool {
	switch {
	case isMemberErr(err, ErrMemberRemoved):
		writeMessage(w, r, http.StatusGone, "Member permanently removed: "+strconv.FormatUint(id, 16))
	case isMemberErr(err, ErrMemberNotFound):
		writeMessage(w, r, http.StatusNotFound, "No such member: "+strconv.FormatUint(id, 16))
	default:
		return false
	}
	return true
}

// changeTarget parses the member ID of a remove or promote request, and
// answers the request itself when no MembershipChanger is configured;
// false means it was answered.
func (rt *router) changeTarget(w http.ResponseWriter, r *http.Request, sub string) (uint64, bool) {
	id, ok := memberID(w, r, sub)
	if !ok {
		return 0, false
	}
	if rt.opt.Members == nil {
		rt.noChanger(w, r, id)
		return 0, false
	}
	return id, true
}

func (rt *router) removeMember(w http.ResponseWriter, r *http.Request, sub string) {
	id, ok := rt.changeTarget(w, r, sub)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), rt.opt.RequestTimeout)
	err := rt.opt.Members.RemoveMember(ctx, id)
	cancel()
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case writeMemberIDError(w, r, id, err):
	default:
		rt.memberFailure(w, r, err)
	}
}

func (rt *router) updateMember(w http.ResponseWriter, r *http.Request, sub string) {
	id, ok := memberID(w, r, sub)
	if !ok {
		return
	}
	urls, ok := rt.decodePeerURLs(w, r, nil)
	if !ok {
		return
	}
	if rt.opt.Members == nil {
		if rt.isMember(id) && rt.peerURLTaken(urls, id) {
			writeMessage(w, r, http.StatusConflict, ErrPeerURLExists.Error())
			return
		}
		rt.noChanger(w, r, id)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), rt.opt.RequestTimeout)
	err := rt.opt.Members.UpdateMember(ctx, id, urls)
	cancel()
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case isMemberErr(err, ErrPeerURLExists):
		writeMessage(w, r, http.StatusConflict, ErrPeerURLExists.Error())
	case isMemberErr(err, ErrMemberNotFound):
		writeMessage(w, r, http.StatusNotFound, "No such member: "+strconv.FormatUint(id, 16))
	default:
		rt.memberFailure(w, r, err)
	}
}

// promoteMember handles POST /v2/members/<hex id>/promote: learner id
// becomes a voter. 200 with the member; 404 for an unknown or unparseable
// ID, 410 for a removed one, 412 when the member is not a learner or not
// in sync with the leader (etcd's texts), 500 for a reconfiguration the
// strict checks refuse or a consensus failure (logged). The body is
// ignored.
func (rt *router) promoteMember(w http.ResponseWriter, r *http.Request, sub string) {
	id, ok := rt.changeTarget(w, r, sub)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), rt.opt.RequestTimeout)
	m, err := rt.opt.Members.PromoteMember(ctx, id)
	cancel()
	switch {
	case err == nil:
		writeJSONLine(w, r, http.StatusOK, wireMember(m))
	case writeMemberIDError(w, r, id, err):
	case isMemberErr(err, ErrLearnerNotReady):
		writeMessage(w, r, http.StatusPreconditionFailed, ErrLearnerNotReady.Error())
	case isMemberErr(err, ErrMemberNotLearner):
		writeMessage(w, r, http.StatusPreconditionFailed, ErrMemberNotLearner.Error())
	default:
		rt.memberFailure(w, r, err)
	}
}

// noChanger answers a valid change when no MembershipChanger is wired: 404
// for an unknown member, else 500.
func (rt *router) noChanger(w http.ResponseWriter, r *http.Request, id uint64) {
	if !rt.isMember(id) {
		writeMessage(w, r, http.StatusNotFound, "No such member: "+strconv.FormatUint(id, 16))
		return
	}
	writeMessage(w, r, http.StatusInternalServerError, msgInternal)
}

// memberFailure is etcd's answer to a rejected reconfiguration or a consensus
// failure: 500 with the real reason only logged.
func (rt *router) memberFailure(w http.ResponseWriter, r *http.Request, err error) {
	rt.log.Warn("membership change failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeMessage(w, r, http.StatusInternalServerError, msgInternal)
}

// memberID parses the hex member ID of a PUT/DELETE path. A missing ID is a
// plain-text 405 without Allow; an unparseable one is 404.
func memberID(w http.ResponseWriter, r *http.Request, sub string) (uint64, bool) {
	if sub == "" {
		writeTextError(w, r, http.StatusMethodNotAllowed, "Method Not Allowed")
		return 0, false
	}
	id, err := strconv.ParseUint(sub, 16, 64)
	if err != nil {
		writeMessage(w, r, http.StatusNotFound, "No such member: "+sub)
		return 0, false
	}
	return id, true
}

// decodePeerURLs reads {"peerURLs":[…]} from a JSON body and validates the
// URLs as etcd's types.NewURLs does; they come back as URL strings, sorted.
// With learner non-nil (POST) the body's optional "isLearner" is read
// into it; otherwise that field is ignored like any unknown one (PUT).
func (rt *router) decodePeerURLs(w http.ResponseWriter, r *http.Request, learner *bool) ([]string, bool) {
	ctype := r.Header.Get("Content-Type")
	if i := strings.IndexByte(ctype, ';'); i >= 0 {
		ctype = strings.TrimSpace(strings.ToLower(ctype[:i]))
	}
	if ctype != "application/json" {
		writeMessage(w, r, http.StatusUnsupportedMediaType,
			fmt.Sprintf("Bad Content-Type %s, accept application/json", ctype))
		return nil, false
	}
	limit := rt.opt.MaxRequestBytes
	if r.ContentLength > limit {
		writeMessage(w, r, http.StatusRequestEntityTooLarge, bodyTooLarge(limit).Cause)
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeMessage(w, r, http.StatusRequestEntityTooLarge, bodyTooLarge(limit).Cause)
			return nil, false
		}
		writeMessage(w, r, http.StatusBadRequest, err.Error())
		return nil, false
	}
	var req struct {
		PeerURLs []string `json:"peerURLs"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		writeMessage(w, r, http.StatusBadRequest, err.Error())
		return nil, false
	}
	if learner != nil {
		// A second pass: a body without the field decodes, and fails,
		// exactly as it did before the field existed.
		var ext struct {
			IsLearner bool `json:"isLearner"`
		}
		if err := json.Unmarshal(b, &ext); err != nil {
			writeMessage(w, r, http.StatusBadRequest, err.Error())
			return nil, false
		}
		*learner = ext.IsLearner
	}
	urls, err := parsePeerURLs(req.PeerURLs)
	if err != nil {
		writeMessage(w, r, http.StatusBadRequest, err.Error())
		return nil, false
	}
	return urls, true
}

// parsePeerURLs is etcd's types.NewURLs with its error texts.
func parsePeerURLs(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, errors.New("no valid URLs given")
	}
	out := make([]string, len(in))
	for i, s := range in {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		switch u.Scheme {
		case "http", "https":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return nil, fmt.Errorf(`URL address does not have the form "host:port": %s`, s)
			}
			if u.Path != "" {
				return nil, fmt.Errorf("URL must not contain a path: %s", s)
			}
		case "unix", "unixs":
		default:
			return nil, fmt.Errorf("URL scheme must be http, https, unix, or unixs: %s", s)
		}
		out[i] = u.String()
	}
	sort.Strings(out)
	return out, nil
}

// isMember reports whether id is a current member.
func (rt *router) isMember(id uint64) bool {
	for _, m := range rt.cluster.Members() {
		if mid, err := strconv.ParseUint(m.ID, 16, 64); err == nil && mid == id {
			return true
		}
	}
	return false
}

// peerURLTaken reports whether a member other than except uses one of urls.
func (rt *router) peerURLTaken(urls []string, except uint64) bool {
	for _, m := range rt.cluster.Members() {
		if mid, err := strconv.ParseUint(m.ID, 16, 64); err == nil && mid == except && except != 0 {
			continue
		}
		for _, p := range m.PeerURLs {
			for _, u := range urls {
				if p == u {
					return true
				}
			}
		}
	}
	return false
}

// isMemberErr matches err against a membership sentinel by identity or by
// etcd's text anywhere in the wrap chain.
func isMemberErr(err, target error) bool {
	if errors.Is(err, target) {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == target.Error() {
			return true
		}
	}
	return false
}

// wireMember normalises nil lists to [] as etcd renders them.
func wireMember(m api.Member) api.Member {
	if m.PeerURLs == nil {
		m.PeerURLs = []string{}
	}
	if m.ClientURLs == nil {
		m.ClientURLs = []string{}
	}
	return m
}

// sortedMembers returns ms sorted by numeric ID, lists normalised.
func sortedMembers(ms []api.Member) []api.Member {
	out := make([]api.Member, len(ms))
	for i, m := range ms {
		out[i] = wireMember(m)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, errA := strconv.ParseUint(out[i].ID, 16, 64)
		b, errB := strconv.ParseUint(out[j].ID, 16, 64)
		if errA != nil || errB != nil {
			return out[i].ID < out[j].ID
		}
		return a < b
	})
	return out
}
