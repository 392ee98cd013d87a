package server

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"cairn/api"
)

// InitialMember is one entry of --initial-cluster.
type InitialMember struct {
	Name     string
	PeerURLs []string
	ID       uint64
}

// ParseInitialCluster parses "name=url,name=url2,other=url3" (a name may
// repeat for several peer URLs) and derives every member ID from its sorted
// peer URLs and the cluster token, so every member computes the same IDs
// without talking to the others.
func ParseInitialCluster(s, token string) ([]InitialMember, error) {
	byName := map[string]*InitialMember{}
	var order []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, raw, ok := strings.Cut(part, "=")
		if !ok || name == "" || raw == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not name=peerURL", part)
		}
		if err := validatePeerURL(raw); err != nil {
			return nil, fmt.Errorf("--initial-cluster: member %q: %w", name, err)
		}
		m, seen := byName[name]
		if !seen {
			m = &InitialMember{Name: name}
			byName[name] = m
			order = append(order, name)
		}
		m.PeerURLs = append(m.PeerURLs, raw)
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("--initial-cluster is empty")
	}
	out := make([]InitialMember, 0, len(order))
	seenURL := map[string]string{}
	for _, name := range order {
		m := byName[name]
		slices.Sort(m.PeerURLs)
		for _, u := range m.PeerURLs {
			if other, dup := seenURL[u]; dup {
				return nil, fmt.Errorf("--initial-cluster: peer URL %s given for both %q and %q", u, other, name)
			}
			seenURL[u] = name
		}
		m.ID = MemberID(m.PeerURLs, token)
		out = append(out, *m)
	}
	return out, nil
}

// MemberID hashes sorted peer URLs and the cluster token into a member ID.
func MemberID(peerURLs []string, token string) uint64 {
	urls := slices.Clone(peerURLs)
	slices.Sort(urls)
	h := sha1.Sum([]byte(strings.Join(urls, "") + token))
	id := binary.BigEndian.Uint64(h[:8])
	if id == 0 {
		id = 1 // 0 means "none" to raft
	}
	return id
}

// ClusterID hashes the sorted member IDs into the cluster ID.
func ClusterID(ids []uint64) uint64 {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	b := make([]byte, 8*len(sorted))
	for i, id := range sorted {
		binary.BigEndian.PutUint64(b[8*i:], id)
	}
	h := sha1.Sum(b)
	return binary.BigEndian.Uint64(h[:8])
}

// validatePeerURL applies etcd's rules to a peer URL.
func validatePeerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "http", "https", "unix", "unixs":
	default:
		return fmt.Errorf("URL scheme must be http, https, unix, or unixs: %s", raw)
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Errorf("URL must not contain a path: %s", raw)
	}
	if _, port, err := splitHostPort(u.Host); err != nil || port == "" {
		return fmt.Errorf(`URL address does not have the form "host:port": %s`, raw)
	}
	return nil
}

func splitHostPort(hostport string) (string, string, error) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return "", "", fmt.Errorf("missing port in %q", hostport)
	}
	if _, err := strconv.ParseUint(hostport[i+1:], 10, 16); err != nil {
		return "", "", fmt.Errorf("bad port in %q", hostport)
	}
	return hostport[:i], hostport[i+1:], nil
}

// hexID renders an ID the way the client port does: lowercase hex, no padding.
func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

// memberOf builds the API view of a member.
func memberOf(id uint64, name string, peerURLs, clientURLs []string) api.Member {
	if clientURLs == nil {
		clientURLs = []string{}
	}
	p := slices.Clone(peerURLs)
	slices.Sort(p)
	return api.Member{ID: hexID(id), Name: name, PeerURLs: p, ClientURLs: clientURLs}
}
