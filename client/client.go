// Package client is a small Go client for Cairn's public HTTP API (the etcd
// v2 keys, members and stats endpoints). The CLI, the benchmark and the
// end-to-end tests use it.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"cairn/api"
)

// Client talks to one or more members; requests go to the first endpoint
// that answers.
type Client struct {
	endpoints []string
	hc        *http.Client
}

// New returns a client for the given endpoints (e.g. "http://127.0.0.1:2379").
// maxConns bounds the idle keep-alive connections kept per member.
func New(endpoints []string, maxConns int) *Client {
	if maxConns <= 0 {
		maxConns = 16
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     90 * time.Second,
	}
	eps := make([]string, 0, len(endpoints))
	for _, e := range endpoints {
		eps = append(eps, strings.TrimRight(e, "/"))
	}
	return &Client{endpoints: eps, hc: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Response is a decoded /v2/keys answer with its index headers.
type Response struct {
	Event     *api.Event
	EtcdIndex uint64
	RaftIndex uint64
	RaftTerm  uint64
	Status    int
}

// SetOptions are the optional parameters of a PUT.
type SetOptions struct {
	TTL       time.Duration // rounded to whole seconds; 0 = none
	Dir       bool
	PrevExist *bool
	PrevValue string
	PrevIndex uint64
	Refresh   bool
}

// GetOptions are the optional parameters of a GET.
type GetOptions struct {
	Recursive bool
	Sorted    bool
	Quorum    bool
}

// DeleteOptions are the optional parameters of a DELETE.
type DeleteOptions struct {
	Dir       bool
	Recursive bool
	PrevValue string
	PrevIndex uint64
}

// Get reads a key or directory.
func (c *Client) Get(ctx context.Context, key string, o GetOptions) (*Response, error) {
	q := url.Values{}
	if o.Recursive {
		q.Set("recursive", "true")
	}
	if o.Sorted {
		q.Set("sorted", "true")
	}
	if o.Quorum {
		q.Set("quorum", "true")
	}
	return c.keys(ctx, http.MethodGet, key, q, nil)
}

// Set writes a value (or a directory with o.Dir).
func (c *Client) Set(ctx context.Context, key, value string, o SetOptions) (*Response, error) {
	form := url.Values{}
	if !o.Dir {
		form.Set("value", value)
	}
	if o.Dir {
		form.Set("dir", "true")
	}
	if o.TTL > 0 {
		form.Set("ttl", strconv.FormatInt(int64((o.TTL+time.Second-1)/time.Second), 10))
	}
	if o.PrevExist != nil {
		form.Set("prevExist", strconv.FormatBool(*o.PrevExist))
	}
	if o.PrevValue != "" {
		form.Set("prevValue", o.PrevValue)
	}
	if o.PrevIndex != 0 {
		form.Set("prevIndex", strconv.FormatUint(o.PrevIndex, 10))
	}
	if o.Refresh {
		form.Set("refresh", "true")
		form.Del("value")
	}
	return c.keys(ctx, http.MethodPut, key, nil, form)
}

// CreateInOrder POSTs a value under dir.
func (c *Client) CreateInOrder(ctx context.Context, dir, value string, ttl time.Duration) (*Response, error) {
	form := url.Values{"value": {value}}
	if ttl > 0 {
		form.Set("ttl", strconv.FormatInt(int64(ttl/time.Second), 10))
	}
	return c.keys(ctx, http.MethodPost, dir, nil, form)
}

// Delete removes a key or directory.
func (c *Client) Delete(ctx context.Context, key string, o DeleteOptions) (*Response, error) {
	q := url.Values{}
	if o.Dir {
		q.Set("dir", "true")
	}
	if o.Recursive {
		q.Set("recursive", "true")
	}
	if o.PrevValue != "" {
		q.Set("prevValue", o.PrevValue)
	}
	if o.PrevIndex != 0 {
		q.Set("prevIndex", strconv.FormatUint(o.PrevIndex, 10))
	}
	return c.keys(ctx, http.MethodDelete, key, q, nil)
}

// Watch calls fn for each event on key from waitIndex on (0: from now),
// using stream=true, until ctx is done or fn returns false.
func (c *Client) Watch(ctx context.Context, key string, recursive bool, waitIndex uint64, fn func(*api.Event) bool) error {
	q := url.Values{"wait": {"true"}, "stream": {"true"}}
	if recursive {
		q.Set("recursive", "true")
	}
	if waitIndex > 0 {
		q.Set("waitIndex", strconv.FormatUint(waitIndex, 10))
	}
	resp, err := c.send(ctx, "watch "+key, func(ep string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, keyURL(ep, key, q), nil)
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var ev api.Event
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read watch stream: %w", err)
		}
		if !fn(&ev) {
			return nil
		}
	}
}

// Members lists the cluster's members (GET /v2/members).
func (c *Client) Members(ctx context.Context) ([]api.Member, error) {
	var out api.MemberList
	if err := c.getJSON(ctx, "/v2/members", &out); err != nil {
		return nil, err
	}
	return out.Members, nil
}

// PeerMembers lists members through a peer URL (GET /members), which
// answers decimal IDs; they are returned as hex like the client port's.
func (c *Client) PeerMembers(ctx context.Context) ([]api.Member, error) {
	var raw []struct {
		ID         uint64   `json:"id"`
		PeerURLs   []string `json:"peerURLs"`
		Name       string   `json:"name"`
		ClientURLs []string `json:"clientURLs"`
		IsLearner  bool     `json:"isLearner"`
	}
	if err := c.getJSON(ctx, "/members", &raw); err != nil {
		return nil, err
	}
	out := make([]api.Member, 0, len(raw))
	for _, m := range raw {
		out = append(out, api.Member{ID: strconv.FormatUint(m.ID, 16), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	return out, nil
}

// HTTPError is a failed request outside /v2/keys (members): the status
// and the body's "message" (or its text when it is not JSON).
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// MemberResponse is the answer to a membership change.
type MemberResponse struct {
	// Member is the added or promoted member (nil for an update or a
	// removal).
	Member *api.Member
	// ClusterID is the cluster's ID (X-Etcd-Cluster-Id), lowercase hex.
	ClusterID string
}

// AddMember adds a member with the given peer URLs (POST /v2/members); a
// learner (non-voting member) with learner set.
func (c *Client) AddMember(ctx context.Context, peerURLs []string, learner bool) (*MemberResponse, error) {
	req := struct {
		PeerURLs  []string `json:"peerURLs"`
		IsLearner bool     `json:"isLearner,omitempty"`
	}{peerURLs, learner}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode member: %w", err)
	}
	return c.memberChange(ctx, http.MethodPost, "/v2/members", body, http.StatusCreated)
}

// UpdateMember replaces the peer URLs of member id (hex).
func (c *Client) UpdateMember(ctx context.Context, id string, peerURLs []string) (*MemberResponse, error) {
	body, err := json.Marshal(struct {
		PeerURLs []string `json:"peerURLs"`
	}{peerURLs})
	if err != nil {
		return nil, fmt.Errorf("encode member: %w", err)
	}
	return c.memberChange(ctx, http.MethodPut, "/v2/members/"+url.PathEscape(id), body, http.StatusNoContent)
}

// RemoveMember removes member id (hex).
func (c *Client) RemoveMember(ctx context.Context, id string) (*MemberResponse, error) {
	return c.memberChange(ctx, http.MethodDelete, "/v2/members/"+url.PathEscape(id), nil, http.StatusNoContent)
}

// PromoteMember makes learner id (hex) a voter (POST
// /v2/members/<id>/promote, a Cairn extension).
func (c *Client) PromoteMember(ctx context.Context, id string) (*MemberResponse, error) {
	return c.memberChange(ctx, http.MethodPost, "/v2/members/"+url.PathEscape(id)+"/promote", nil, http.StatusOK)
}

// memberChange sends one membership request to the first endpoint that
// answers; want is the success status. A JSON body is decoded as the
// member.
func (c *Client) memberChange(ctx context.Context, method, path string, body []byte, want int) (*MemberResponse, error) {
	resp, err := c.send(ctx, method+" "+path, func(ep string) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, method, ep+path, bytes.NewReader(body))
		if err == nil && body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	})
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &m) != nil || m.Message == "" {
			m.Message = strings.TrimSpace(string(b))
		}
		return nil, &HTTPError{Status: resp.StatusCode, Message: m.Message}
	}
	out := &MemberResponse{ClusterID: resp.Header.Get(api.HeaderClusterID)}
	if len(b) > 0 {
		var m api.Member
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s %s: decode member: %w", method, path, err)
		}
		out.Member = &m
	}
	return out, nil
}

// Leader returns the leader member (GET /v2/members/leader).
func (c *Client) Leader(ctx context.Context) (*api.Member, error) {
	var m api.Member
	if err := c.getJSON(ctx, "/v2/members/leader", &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.send(ctx, "GET "+path, func(ep string) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, ep+path, nil)
	})
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("GET %s: read answer: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// send tries the endpoints in turn with the request newReq builds for
// each and returns the first answer. An endpoint that does not answer
// passes the request on to the next, unless ctx is done.
func (c *Client) send(ctx context.Context, what string, newReq func(ep string) (*http.Request, error)) (*http.Response, error) {
	var lastErr error
	for _, ep := range c.endpoints {
		req, err := newReq(ep)
		if err != nil {
			return nil, fmt.Errorf("%s: build request: %w", what, err)
		}
		resp, err := c.hc.Do(req)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s: no endpoint answered: %w", what, lastErr)
}

// keys performs one /v2/keys request against the first endpoint that
// answers. An API error comes back as *api.Error.
func (c *Client) keys(ctx context.Context, method, key string, q, form url.Values) (*Response, error) {
	resp, err := c.send(ctx, method+" "+key, func(ep string) (*http.Request, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, keyURL(ep, key, q), body)
		if err == nil && form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return req, err
	})
	if err != nil {
		return nil, err
	}
	return decodeResponse(resp)
}

func decodeResponse(resp *http.Response) (*Response, error) {
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, decodeError(resp)
	}
	out := &Response{Status: resp.StatusCode}
	out.EtcdIndex, _ = strconv.ParseUint(resp.Header.Get(api.HeaderEtcdIndex), 10, 64)
	out.RaftIndex, _ = strconv.ParseUint(resp.Header.Get(api.HeaderRaftIndex), 10, 64)
	out.RaftTerm, _ = strconv.ParseUint(resp.Header.Get(api.HeaderRaftTerm), 10, 64)
	var ev api.Event
	if err := json.NewDecoder(resp.Body).Decode(&ev); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	out.Event = &ev
	return out, nil
}

func decodeError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e api.Error
	if err := json.Unmarshal(body, &e); err == nil && e.Code != 0 {
		e.Status = resp.StatusCode
		return &e
	}
	return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
}

func keyURL(ep, key string, q url.Values) string {
	u := ep + "/v2/keys" + escapeKey(key)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// escapeKey percent-encodes each segment of key, keeping the slashes.
func escapeKey(key string) string {
	if !strings.HasPrefix(key, "/") {
		key = "/" + key
	}
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
