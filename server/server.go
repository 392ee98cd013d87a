// Package server assembles one Cairn member from its parts: the Pebble
// engine, the key tree, the raft node, the expirer and the HTTP listeners.
// main.go only turns flags into a Config; tests and benchmarks start members
// in-process through the same Start.
package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"cairn/api"
	"cairn/consensus"
	"cairn/httpapi"
	"cairn/internal/leanhttp"
	"cairn/leases"
	"cairn/storage"
	"cairn/watchers"
)

// clusterVersion is the etcd cluster version Cairn speaks (the v2 API of 3.5).
const clusterVersion = "3.5.0"

// Config is everything a member needs; main.go fills it from flags.
type Config struct {
	Name                     string
	DataDir                  string
	InMemory                 bool
	ListenClientURLs         []string
	AdvertiseClientURLs      []string
	ListenPeerURLs           []string
	InitialAdvertisePeerURLs []string
	InitialCluster           string
	InitialClusterState      string // "new" or "existing"
	InitialClusterToken      string
	MaxRequestBytes          int64
	CORSOrigins              []string
	HeartbeatInterval        time.Duration
	ElectionTimeout          time.Duration
	SnapshotCount            uint64
	// LeaderCompactEvery is the leader's eager log compaction step (0: the
	// consensus default, 1000 entries); tests set it small.
	LeaderCompactEvery uint64
	// MaxWatchers caps the watchers open at once on this member (0: no cap).
	MaxWatchers int
	// WatchHistoryEvents and WatchHistoryAge bound the durable watch
	// history (0: 100000 events, 1 h).
	WatchHistoryEvents int
	WatchHistoryAge    time.Duration
	// SSEHeartbeat is the comment interval of idle Server-Sent Events
	// watches (0: 15 s).
	SSEHeartbeat time.Duration
	// RequestTimeout bounds each write and quorum read before it ends
	// with error 300 "etcdserver: request timed out" (0: 7 s, etcd's).
	// No flag sets it; tests shorten it.
	RequestTimeout time.Duration
	// PeerFilter is a test seam for partitions (nil: off): it is asked
	// before every request this member makes to a peer, with both IDs,
	// and false drops the request as if the peer were unreachable (see
	// consensus.TransportConfig.Filter).
	PeerFilter func(from, to uint64) bool
	// MaxLearners caps the learners a member lets be added (0: 1, etcd's
	// default).
	MaxLearners int
	// EnablePprof serves Go's profiler under /debug/pprof/ on the client
	// URLs.
	EnablePprof bool
	// ClientHTTP chooses the client port's HTTP/1.1 server: "lean" (the
	// default) answers plain requests itself and hands watches, streams
	// and anything unusual to net/http (internal/leanhttp); "std" serves
	// everything with net/http.
	ClientHTTP string
	Logger     *slog.Logger
	Version    string
}

func (c *Config) setDefaults() {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.DataDir == "" {
		c.DataDir = c.Name + ".cairn"
	}
	if c.InitialCluster == "" {
		parts := make([]string, 0, len(c.InitialAdvertisePeerURLs))
		for _, u := range c.InitialAdvertisePeerURLs {
			parts = append(parts, c.Name+"="+u)
		}
		c.InitialCluster = strings.Join(parts, ",")
	}
	if c.InitialClusterState == "" {
		c.InitialClusterState = "new"
	}
	if c.ClientHTTP == "" {
		c.ClientHTTP = ClientHTTPLean
	}
	if c.InitialClusterToken == "" {
		c.InitialClusterToken = "etcd-cluster"
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = 1572864
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 100 * time.Millisecond
	}
	if c.MaxLearners == 0 {
		c.MaxLearners = 1
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = 1000 * time.Millisecond
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = 10000
	}
	if c.WatchHistoryEvents <= 0 {
		c.WatchHistoryEvents = storage.DefaultHistoryEvents
	}
	if c.WatchHistoryAge <= 0 {
		c.WatchHistoryAge = storage.DefaultHistoryAge
	}
	if c.SSEHeartbeat <= 0 {
		c.SSEHeartbeat = httpapi.DefaultSSEHeartbeat
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Version == "" {
		c.Version = "0.1.0"
	}
}

// Server is a running member.
type Server struct {
	cfg       Config
	logger    *slog.Logger
	engine    *storage.Engine
	tree      *storage.Tree
	node      *consensus.Node
	expirer   *leases.Expirer
	hub       *watchers.Hub
	streams   *httpapi.Streams // SSE watches handed off by their handlers
	cluster   *clusterView
	transport *consensus.HTTPTransport
	stage     *consensus.SnapshotStage // nil in memory
	registry  *prometheus.Registry

	clientServers []httpServer
	peerServers   []httpServer
	clientURLs    []string // actual bound client URLs
	peerURLs      []string

	cancel   context.CancelFunc
	bg       sync.WaitGroup
	stopOnce sync.Once
	done     chan struct{}
	errMu    sync.Mutex
	err      error
}

// Start opens the member's storage, starts raft and begins serving.
func Start(cfg Config) (*Server, error) {
	cfg.setDefaults()
	s := &Server{cfg: cfg, logger: cfg.Logger, done: make(chan struct{})}
	if err := s.start(); err != nil {
		s.closeAll()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	cfg := s.cfg
	switch cfg.InitialClusterState {
	case "new", "existing":
	default:
		return fmt.Errorf("--initial-cluster-state must be new or existing, not %q", cfg.InitialClusterState)
	}
	if cfg.ClientHTTP != ClientHTTPLean && cfg.ClientHTTP != ClientHTTPStd {
		return fmt.Errorf("--client-http must be lean or std, not %q", cfg.ClientHTTP)
	}
	members, err := ParseInitialCluster(cfg.InitialCluster, cfg.InitialClusterToken)
	if err != nil {
		return err
	}
	self := -1
	for i, m := range members {
		if m.Name == cfg.Name {
			self = i
		}
	}
	if self < 0 {
		return fmt.Errorf("--initial-cluster has no member named %q (--name)", cfg.Name)
	}
	adv := slices.Clone(cfg.InitialAdvertisePeerURLs)
	slices.Sort(adv)
	if !slices.Equal(adv, members[self].PeerURLs) {
		return fmt.Errorf("--initial-advertise-peer-urls %v do not match --initial-cluster's %v for %q", cfg.InitialAdvertisePeerURLs, members[self].PeerURLs, cfg.Name)
	}
	if !cfg.InMemory {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
	}
	s.engine, err = storage.Open(cfg.DataDir, storage.Options{InMemory: cfg.InMemory, Logger: s.logger.With("component", "pebble")})
	if err != nil {
		return err
	}
	if !cfg.InMemory {
		// Received snapshots are staged here, not held in memory.
		if s.stage, err = consensus.NewSnapshotStage(filepath.Join(cfg.DataDir, "snap")); err != nil {
			return err
		}
	}
	ident, err := s.resolveIdentity(members, self)
	if err != nil {
		return err
	}
	clusterID, selfID, restart := ident.clusterID, ident.selfID, ident.restart
	s.tree, err = storage.OpenTree(s.engine)
	if err != nil {
		return fmt.Errorf("load key tree: %w", err)
	}

	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStorageCollector(s.engine.IOStats))

	// Listeners first, so a port clash fails before raft starts.
	clientLns, err := listen(cfg.ListenClientURLs)
	if err != nil {
		return fmt.Errorf("client listener: %w", err)
	}
	peerLns, err := listen(cfg.ListenPeerURLs)
	if err != nil {
		closeListeners(clientLns)
		return fmt.Errorf("peer listener: %w", err)
	}
	s.clientURLs = boundURLs(cfg.ListenClientURLs, clientLns)
	s.peerURLs = boundURLs(cfg.ListenPeerURLs, peerLns)
	advertiseClient := substitutePorts(cfg.AdvertiseClientURLs, cfg.ListenClientURLs, s.clientURLs)
	advertisePeer := substitutePorts(cfg.InitialAdvertisePeerURLs, cfg.ListenPeerURLs, s.peerURLs)

	s.expirer = leases.NewExpirer(leases.Config{
		Proposer: expireProposer{s},
		Schedule: s.tree,
		IsLeader: func() bool { st := s.node.Status(); return st.Leader == st.ID },
		Logger:   s.logger.With("component", "expirer"),
	})
	if err := s.startTransport(&ident, advertisePeer); err != nil {
		closeListeners(clientLns)
		closeListeners(peerLns)
		return err
	}
	s.hub = s.newHub()
	s.streams = httpapi.NewStreams()
	s.node, err = consensus.Start(consensus.Config{
		ID:                 selfID,
		InitialMembers:     ident.initial,
		Join:               ident.join,
		Transport:          s.transport,
		SnapshotStage:      s.stage,
		Engine:             s.engine,
		SM:                 s.tree,
		Observer:           observers{hubObserver{s.hub, s.tree}, s.expirer},
		TickInterval:       cfg.HeartbeatInterval,
		HeartbeatTicks:     1,
		ElectionTicks:      max(int(cfg.ElectionTimeout/cfg.HeartbeatInterval), 2),
		SnapshotCount:      cfg.SnapshotCount,
		LeaderCompactEvery: cfg.LeaderCompactEvery,
		Logger:             s.logger,
		Registerer:         s.registry,
	})
	if err != nil {
		closeListeners(clientLns)
		closeListeners(peerLns)
		return fmt.Errorf("start raft: %w", err)
	}
	s.transport.Attach(s.node)
	s.cluster = &clusterView{id: clusterID, selfID: selfID, self: memberOf(selfID, cfg.Name, advertisePeer, advertiseClient),
		token: cfg.InitialClusterToken, node: s.node, tr: s.transport, now: time.Now,
		peers: &http.Client{Transport: &http.Transport{}}, filter: cfg.PeerFilter,
		maxLearners: cfg.MaxLearners}

	router := httpapi.NewRouter(raftAdapter{s.node}, storeAdapter{s.tree}, s.cluster, httpapi.Options{
		Watches:         watchAdapter{s.hub, cfg.MaxWatchers},
		SSEHeartbeat:    cfg.SSEHeartbeat,
		Streams:         s.streams,
		Members:         s.cluster,
		PeerStats:       s.cluster,
		MaxRequestBytes: cfg.MaxRequestBytes,
		RequestTimeout:  cfg.RequestTimeout,
		CORSOrigins:     cfg.CORSOrigins,
		Logger:          s.logger.With("component", "http"),
		Registry:        s.registry,
		Version:         cfg.Version,
		EnablePprof:     cfg.EnablePprof,
	})

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.goBackground(func() { _ = s.expirer.Run(ctx) })
	s.goBackground(func() { s.trimHistory(ctx) })
	s.goBackground(func() {
		select {
		case <-s.node.Done():
			s.fail(fmt.Errorf("raft stopped: %w", s.node.Err()))
		case <-ctx.Done():
		}
	})
	s.publish(ctx, advertiseClient)
	for _, ln := range clientLns {
		s.clientServers = append(s.clientServers, s.serveClient(ln, router))
	}
	peer := s.peerHandler(s.transport.Handler())
	for _, ln := range peerLns {
		hs := s.serve(ln, peer)
		// Peers' message streams never end on their own: Shutdown ends them.
		hs.RegisterOnShutdown(s.transport.CloseStreams)
		s.peerServers = append(s.peerServers, hs)
	}
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	s.logger.Info("member started", "name", cfg.Name, "id", hexID(selfID), "cluster-id", hexID(clusterID),
		"client-urls", s.clientURLs, "peer-urls", s.peerURLs, "data-dir", cfg.DataDir, "in-memory", cfg.InMemory, "restart", restart)
	return nil
}

// checkIdentity records the cluster and member IDs on first start and
// refuses to run on a data directory that belongs to another cluster.
func (s *Server) checkIdentity(clusterID, selfID uint64) (restart bool, err error) {
	want := make([]byte, 16)
	binary.BigEndian.PutUint64(want, clusterID)
	binary.BigEndian.PutUint64(want[8:], selfID)
	got, found, err := s.engine.GetMeta("identity")
	if err != nil {
		return false, err
	}
	if !found {
		return false, s.engine.SetMeta("identity", want)
	}
	if len(got) != 16 {
		return false, fmt.Errorf("data dir %s: corrupt identity record", s.cfg.DataDir)
	}
	if gotCluster := binary.BigEndian.Uint64(got); gotCluster != clusterID {
		return false, fmt.Errorf("data dir %s belongs to cluster %s, but --initial-cluster and --initial-cluster-token give cluster %s",
			s.cfg.DataDir, hexID(gotCluster), hexID(clusterID))
	}
	if gotSelf := binary.BigEndian.Uint64(got[8:]); gotSelf != selfID {
		return false, fmt.Errorf("data dir %s belongs to member %s, but this member's ID is %s", s.cfg.DataDir, hexID(gotSelf), hexID(selfID))
	}
	return true, nil
}

// The client port's HTTP servers.
const (
	ClientHTTPLean = "lean"
	ClientHTTPStd  = "std"
)

// httpServer is what Stop needs of a port's server.
type httpServer interface {
	Shutdown(context.Context) error
	Close() error
}

// serveClient serves the client API on ln: with the lean server in front
// of net/http unless Config.ClientHTTP says "std".
func (s *Server) serveClient(ln net.Listener, h http.Handler) httpServer {
	if s.cfg.ClientHTTP == ClientHTTPStd {
		return s.serve(ln, h)
	}
	ls := &leanhttp.Server{
		Handler:           h,
		Plain:             httpapi.Plain,
		Fallback:          s.newHTTPServer(h),
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          s.httpErrorLog(),
	}
	s.goBackground(func() {
		if err := ls.Serve(ln); err != nil && !errors.Is(err, leanhttp.ErrServerClosed) {
			s.fail(fmt.Errorf("serve %s: %w", ln.Addr(), err))
		}
	})
	return ls
}

// readHeaderTimeout is etcd's; watches have no write timeout.
const readHeaderTimeout = 5 * time.Minute

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          s.httpErrorLog(),
	}
}

// httpErrorLog receives the HTTP servers' own errors, at debug level.
func (s *Server) httpErrorLog() *log.Logger {
	return slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug)
}

func (s *Server) serve(ln net.Listener, h http.Handler) *http.Server {
	hs := s.newHTTPServer(h)
	s.goBackground(func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.fail(fmt.Errorf("serve %s: %w", ln.Addr(), err))
		}
	})
	return hs
}

func (s *Server) goBackground(fn func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn()
	}()
}

// fail records the first fatal error and signals Done.
func (s *Server) fail(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
}

// Done is closed when the member stopped on its own (a storage failure).
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is the reason the member stopped on its own, if it did.
func (s *Server) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// ClientURLs are the URLs the client API is served on (ports resolved).
func (s *Server) ClientURLs() []string { return s.clientURLs }

// PeerURLs are the URLs the peer listener is served on (ports resolved).
func (s *Server) PeerURLs() []string { return s.peerURLs }

// Stop shuts down gracefully in reverse start order: stop accepting and
// finish in-flight requests, stop expiry, stop raft, close Pebble.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		var errs []error
		// Open watches never end on their own: finish them so Shutdown
		// only waits for real in-flight requests.
		if s.hub != nil {
			s.hub.Close()
		}
		if s.streams != nil {
			// SSE streams served outside their handlers: let them write
			// their end, then cut the ones whose clients stopped reading.
			s.streams.Close(2 * time.Second)
		}
		for _, hs := range slices.Concat(s.clientServers, s.peerServers) {
			if e := hs.Shutdown(ctx); e != nil {
				// Watches never end on their own: cut whatever is left.
				_ = hs.Close()
			}
		}
		errs = append(errs, s.closeAll())
		err = errors.Join(errs...)
	})
	return err
}

// closeAll stops the background work, raft and the engine (each if started).
func (s *Server) closeAll() error {
	if s.cancel != nil {
		s.cancel()
	}
	if s.node != nil {
		s.node.Stop()
	}
	s.bg.Wait()
	if s.cluster != nil {
		s.cluster.peers.CloseIdleConnections()
	}
	if s.transport != nil {
		_ = s.transport.Close()
	}
	if s.engine != nil {
		if err := s.engine.Close(); err != nil {
			return err
		}
		s.engine = nil
	}
	return nil
}

// listen opens one listener per URL (http only).
func listen(urls []string) ([]net.Listener, error) {
	var lns []net.Listener
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			closeListeners(lns)
			return nil, fmt.Errorf("parse %q: %w", raw, err)
		}
		if u.Scheme != "http" {
			closeListeners(lns)
			return nil, fmt.Errorf("%s: only http:// listeners are supported", raw)
		}
		ln, err := net.Listen("tcp", u.Host)
		if err != nil {
			closeListeners(lns)
			return nil, fmt.Errorf("listen on %s: %w", raw, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

func closeListeners(lns []net.Listener) {
	for _, ln := range lns {
		_ = ln.Close()
	}
}

// boundURLs rewrites listen URLs with the ports actually bound (for ":0").
func boundURLs(urls []string, lns []net.Listener) []string {
	out := make([]string, len(urls))
	for i, raw := range urls {
		u, _ := url.Parse(raw)
		host, _, _ := net.SplitHostPort(u.Host)
		_, port, _ := net.SplitHostPort(lns[i].Addr().String())
		u.Host = net.JoinHostPort(host, port)
		out[i] = u.String()
	}
	return out
}

// substitutePorts replaces advertised URLs equal to a listen URL with the
// bound one, so "--listen-client-urls http://127.0.0.1:0" advertises the
// real port (tests rely on it).
func substitutePorts(advertised, listen, bound []string) []string {
	out := slices.Clone(advertised)
	for i, a := range out {
		for j, l := range listen {
			if a == l {
				out[i] = bound[j]
			}
		}
	}
	return out
}

// expireProposer adapts the raft node to leases.Proposer.
type expireProposer struct{ s *Server }

func (p expireProposer) ProposeExpire(ctx context.Context, now int64) ([]*api.Event, error) {
	return p.s.node.ProposeExpire(ctx, now)
}
