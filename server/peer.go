package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"cairn/api"
)

// peerMember is a member as the peer port's /members shows it: a decimal
// ID and etcd's internal field order.
type peerMember struct {
	ID         uint64   `json:"id"`
	PeerURLs   []string `json:"peerURLs"`
	Name       string   `json:"name"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
}

// peerHandler serves the peer listener's public paths: GET /members,
// POST /members/promote/<id> (promote.go) and GET /version. Raft traffic
// is mounted beside them by the transport.
func (s *Server) peerHandler(raft http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/members", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		s.writePeerMembers(w)
	})
	mux.HandleFunc(peerPromotePrefix+"{id}", s.servePeerPromote)
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		b, _ := json.Marshal(api.Version{Server: s.cfg.Version, Cluster: clusterVersion})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	if raft != nil {
		mux.Handle("/raft/", raft)
	}
	return mux
}

// writePeerMembers answers 200 with every member as the peer port shows
// them (GET /members, and a successful promotion as etcd answers it).
func (s *Server) writePeerMembers(w http.ResponseWriter) {
	var out []peerMember
	for _, m := range s.cluster.Members() {
		id, _ := strconv.ParseUint(m.ID, 16, 64)
		out = append(out, peerMember{ID: id, PeerURLs: m.PeerURLs, Name: m.Name, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(out)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(api.HeaderClusterID, hexID(s.cluster.ClusterID()))
	_, _ = w.Write(b.Bytes())
}
