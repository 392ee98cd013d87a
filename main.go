// Command cairn is a Raft-replicated server for etcd's v2 HTTP/JSON API and
// its command-line client. `cairn serve` runs a member; the other commands
// talk to members over HTTP. This file only wires flags to packages.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"cairn/server"
)

// version is the server version reported by /version (etcdserver).
var version = "0.1.0"

func main() {
	app := &cli.App{
		Name:     "cairn",
		Usage:    "a Raft-replicated server for etcd's v2 HTTP/JSON API, and its client",
		Version:  version,
		Commands: append([]*cli.Command{serveCommand()}, clientCommands()...),
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "cairn:", err)
		os.Exit(1)
	}
}

func env(name string) []string {
	return []string{"CAIRN_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

func str(name, value, usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Value: value, Usage: usage, EnvVars: env(name)}
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run a member",
		Flags: []cli.Flag{
			str("name", "default", "human-readable name of this member"),
			str("data-dir", "", "directory for the member's data (default: <name>.cairn)"),
			str("storage", "disk", "disk (Pebble on --data-dir, fsynced) or memory (nothing written, all lost at exit)"),
			str("listen-client-urls", "http://localhost:2379", "comma-separated URLs to serve the client API on"),
			str("advertise-client-urls", "http://localhost:2379", "comma-separated client URLs to advertise to the cluster"),
			str("listen-peer-urls", "http://localhost:2380", "comma-separated URLs to serve peer traffic on"),
			str("initial-advertise-peer-urls", "http://localhost:2380", "comma-separated peer URLs to advertise to the cluster"),
			str("initial-cluster", "", "initial cluster: name=peerURL,… (default: <name>=<initial-advertise-peer-urls>)"),
			str("initial-cluster-state", "new", "new or existing"),
			str("initial-cluster-token", "etcd-cluster", "token that makes IDs unique to this cluster"),
			&cli.Int64Flag{Name: "max-request-bytes", Value: 1572864, EnvVars: env("max-request-bytes"), Usage: "largest request body accepted (413 above it)"},
			str("cors", "*", "comma-separated origins allowed by CORS (* for any)"),
			&cli.IntFlag{Name: "max-learners", Value: 1, EnvVars: env("max-learners"), Usage: "learners (non-voting members) the cluster may have at once"},
			&cli.StringFlag{Name: "client-http", Value: "lean", EnvVars: env("client-http"), Usage: "the client port's HTTP/1.1 server: lean (plain requests answered by a lean server, watches and the rest by net/http) or std (net/http for all)"},
			&cli.BoolFlag{Name: "enable-pprof", EnvVars: env("enable-pprof"), Usage: "serve Go's profiler under /debug/pprof/ on the client URLs"},
			&cli.IntFlag{Name: "heartbeat-interval", Value: 100, EnvVars: env("heartbeat-interval"), Usage: "raft heartbeat interval in ms"},
			&cli.IntFlag{Name: "election-timeout", Value: 1000, EnvVars: env("election-timeout"), Usage: "raft election timeout in ms"},
			&cli.Uint64Flag{Name: "snapshot-count", Value: 10000, EnvVars: env("snapshot-count"), Usage: "applied entries between raft log compactions"},
			&cli.IntFlag{Name: "max-watchers", Value: 0, EnvVars: env("max-watchers"), Usage: "watchers open at once on this member (0: no limit)"},
			&cli.IntFlag{Name: "watch-history-events", Value: 100000, EnvVars: env("watch-history-events"), Usage: "events kept in the durable watch history (waitIndex, Last-Event-ID)"},
			&cli.DurationFlag{Name: "watch-history-age", Value: time.Hour, EnvVars: env("watch-history-age"), Usage: "age past which watch history events are dropped"},
			&cli.DurationFlag{Name: "sse-heartbeat", Value: 15 * time.Second, EnvVars: env("sse-heartbeat"), Usage: "comment interval on idle Server-Sent Events watches"},
			str("log-level", "info", "debug, info, warn or error"),
		},
		Action: runServe,
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runServe(c *cli.Context) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	name := c.String("name")
	dataDir := c.String("data-dir")
	if dataDir == "" {
		dataDir = name + ".cairn"
	}
	var inMemory bool
	switch c.String("storage") {
	case "disk":
	case "memory":
		inMemory = true
	default:
		return fmt.Errorf("--storage must be disk or memory, not %q", c.String("storage"))
	}
	if c.Int("watch-history-events") < 1 || c.Duration("watch-history-age") <= 0 || c.Duration("sse-heartbeat") <= 0 {
		return fmt.Errorf("--watch-history-events, --watch-history-age and --sse-heartbeat must be positive")
	}
	if c.Int("max-learners") < 1 {
		return fmt.Errorf("--max-learners must be at least 1, not %d", c.Int("max-learners"))
	}
	cfg := server.Config{
		Name:                     name,
		DataDir:                  dataDir,
		InMemory:                 inMemory,
		ListenClientURLs:         splitList(c.String("listen-client-urls")),
		AdvertiseClientURLs:      splitList(c.String("advertise-client-urls")),
		ListenPeerURLs:           splitList(c.String("listen-peer-urls")),
		InitialAdvertisePeerURLs: splitList(c.String("initial-advertise-peer-urls")),
		InitialCluster:           c.String("initial-cluster"),
		InitialClusterState:      c.String("initial-cluster-state"),
		InitialClusterToken:      c.String("initial-cluster-token"),
		MaxRequestBytes:          c.Int64("max-request-bytes"),
		CORSOrigins:              splitList(c.String("cors")),
		HeartbeatInterval:        time.Duration(c.Int("heartbeat-interval")) * time.Millisecond,
		ElectionTimeout:          time.Duration(c.Int("election-timeout")) * time.Millisecond,
		SnapshotCount:            c.Uint64("snapshot-count"),
		MaxWatchers:              c.Int("max-watchers"),
		WatchHistoryEvents:       c.Int("watch-history-events"),
		WatchHistoryAge:          c.Duration("watch-history-age"),
		SSEHeartbeat:             c.Duration("sse-heartbeat"),
		EnablePprof:              c.Bool("enable-pprof"),
		ClientHTTP:               c.String("client-http"),
		MaxLearners:              c.Int("max-learners"),
		Logger:                   logger,
		Version:                  version,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := server.Start(cfg)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case <-srv.Done():
		logger.Error("member stopped", "err", srv.Err())
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Stop(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return srv.Err()
}
