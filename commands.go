package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/urfave/cli/v2"

	"cairn/api"
	"cairn/bench"
	"cairn/client"
)

// clientCommands are the commands that talk to members over HTTP.
func clientCommands() []*cli.Command {
	cmds := []*cli.Command{
		{
			Name: "get", Usage: "print a key's value (or a directory's listing)", ArgsUsage: "KEY",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "recursive"}, &cli.BoolFlag{Name: "sorted"},
				&cli.BoolFlag{Name: "quorum", Usage: "linearizable read through raft"},
				&cli.StringFlag{Name: "write-out", Aliases: []string{"w"}, Value: "simple", Usage: "simple or json"},
			},
			Action: func(c *cli.Context) error {
				key, err := oneArg(c, "KEY")
				if err != nil {
					return err
				}
				resp, err := newClient(c).Get(c.Context, key, client.GetOptions{Recursive: c.Bool("recursive"), Sorted: c.Bool("sorted"), Quorum: c.Bool("quorum")})
				if err != nil {
					return err
				}
				return printEvent(c, resp.Event)
			},
		},
		{
			Name: "put", Aliases: []string{"set"}, Usage: "write a key", ArgsUsage: "KEY VALUE",
			Flags: []cli.Flag{
				&cli.DurationFlag{Name: "ttl", Usage: "time to live (whole seconds)"},
				&cli.StringFlag{Name: "prev-value"}, &cli.Uint64Flag{Name: "prev-index"},
				&cli.StringFlag{Name: "write-out", Aliases: []string{"w"}, Value: "simple", Usage: "simple or json"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 2 {
					return fmt.Errorf("usage: cairn put KEY VALUE")
				}
				resp, err := newClient(c).Set(c.Context, c.Args().Get(0), c.Args().Get(1), client.SetOptions{
					TTL: c.Duration("ttl"), PrevValue: c.String("prev-value"), PrevIndex: c.Uint64("prev-index"),
				})
				if err != nil {
					return err
				}
				return printEvent(c, resp.Event)
			},
		},
		{
			Name: "mkdir", Usage: "create a directory", ArgsUsage: "KEY",
			Action: func(c *cli.Context) error {
				key, err := oneArg(c, "KEY")
				if err != nil {
					return err
				}
				_, err = newClient(c).Set(c.Context, key, "", client.SetOptions{Dir: true})
				return err
			},
		},
		{
			Name: "rm", Aliases: []string{"del"}, Usage: "delete a key or directory", ArgsUsage: "KEY",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "dir"}, &cli.BoolFlag{Name: "recursive"}, &cli.StringFlag{Name: "prev-value"}, &cli.Uint64Flag{Name: "prev-index"}},
			Action: func(c *cli.Context) error {
				key, err := oneArg(c, "KEY")
				if err != nil {
					return err
				}
				_, err = newClient(c).Delete(c.Context, key, client.DeleteOptions{
					Dir: c.Bool("dir"), Recursive: c.Bool("recursive"), PrevValue: c.String("prev-value"), PrevIndex: c.Uint64("prev-index"),
				})
				return err
			},
		},
		{
			Name: "watch", Usage: "print events on a key as they happen (until interrupted)", ArgsUsage: "KEY",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "recursive"}, &cli.Uint64Flag{Name: "index", Usage: "start at this store index"}},
			Action: func(c *cli.Context) error {
				key, err := oneArg(c, "KEY")
				if err != nil {
					return err
				}
				ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
				defer stop()
				return newClient(c).Watch(ctx, key, c.Bool("recursive"), c.Uint64("index"), func(ev *api.Event) bool {
					b, _ := ev.MarshalJSON()
					fmt.Println(string(b))
					return true
				})
			},
		},
		{
			Name: "member", Usage: "cluster membership",
			Subcommands: []*cli.Command{
				{
					Name: "list", Usage: "list the members (works against client or peer URLs)",
					Flags:  []cli.Flag{&cli.StringFlag{Name: "write-out", Aliases: []string{"w"}, Value: "simple", Usage: "simple, table or json"}},
					Action: memberList,
				},
				{
					Name: "add", Usage: "add a member (with NAME: print the settings to start it with)", ArgsUsage: "[NAME]",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "peer-urls", Usage: "the new member's comma-separated peer URLs", Required: true},
						&cli.BoolFlag{Name: "learner", Usage: "add a learner (non-voting member), to promote once it caught up"},
					},
					Action: memberAdd,
				},
				{
					Name: "remove", Usage: "remove a member", ArgsUsage: "ID",
					Action: func(c *cli.Context) error {
						return memberChange(c, "removed from", func(cl *client.Client, id string) (*client.MemberResponse, error) {
							return cl.RemoveMember(c.Context, id)
						})
					},
				},
				{
					Name: "update", Usage: "change a member's peer URLs", ArgsUsage: "ID",
					Flags: []cli.Flag{&cli.StringFlag{Name: "peer-urls", Usage: "the member's new comma-separated peer URLs", Required: true}},
					Action: func(c *cli.Context) error {
						return memberChange(c, "updated in", func(cl *client.Client, id string) (*client.MemberResponse, error) {
							return cl.UpdateMember(c.Context, id, splitList(c.String("peer-urls")))
						})
					},
				},
				{
					Name: "promote", Usage: "promote a learner to a voter (once it is in sync with the leader)", ArgsUsage: "ID",
					Action: func(c *cli.Context) error {
						return memberChange(c, "promoted in", func(cl *client.Client, id string) (*client.MemberResponse, error) {
							return cl.PromoteMember(c.Context, id)
						})
					},
				},
			},
		},
		{
			Name: "bench", Usage: "closed-loop load against members: ops/s and latency",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "workload", Value: "put", Usage: "put, get, qget (quorum GET), mixed (90% GET), sse-shared / sse-distinct (Server-Sent Events watchers), or longpoll (v2 long-poll watchers on one prefix)"},
				&cli.IntFlag{Name: "clients", Value: 1, Usage: "concurrent clients, each on its own connection"},
				&cli.DurationFlag{Name: "duration", Value: 10 * time.Second},
				&cli.IntFlag{Name: "requests", Usage: "stop after this many requests (0: run for --duration)"},
				&cli.IntFlag{Name: "value-size", Value: 256},
				&cli.IntFlag{Name: "keys", Value: 10000, Usage: "distinct keys"},
				&cli.IntFlag{Name: "watchers", Value: 10000, Usage: "sse-*, longpoll: watchers, each on its own connection (longpoll: 1000 unless set)"},
				&cli.IntFlag{Name: "rate", Value: 10, Usage: "sse-*, longpoll: writes per second"},
				&cli.StringFlag{Name: "http-client", Value: bench.ClientWire, Usage: "put, get, qget, mixed: wire (lean HTTP/1.1, one write per request) or std (Go's net/http client)"},
			},
			Action: func(c *cli.Context) error {
				if w := c.String("workload"); w == bench.WorkloadSSEShared || w == bench.WorkloadSSEDistinct || w == bench.WorkloadLongPoll {
					rate := c.Int("rate")
					writes := c.Int("requests")
					if writes == 0 {
						writes = int(c.Duration("duration").Seconds() * float64(rate))
					}
					cfg := bench.WatchConfig{
						Endpoint: splitList(c.String("endpoints"))[0], Workload: w, Watchers: c.Int("watchers"),
						Rate: rate, Writes: writes, ValueSize: c.Int("value-size"),
						Log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
					}
					run := bench.RunSSE
					if w == bench.WorkloadLongPoll {
						run = bench.RunLongPoll
						if !c.IsSet("watchers") {
							cfg.Watchers = 1000
						}
					}
					res, err := run(c.Context, cfg)
					if err != nil {
						return err
					}
					fmt.Println(res)
					return nil
				}
				res, err := bench.Run(c.Context, bench.Config{
					Endpoints: splitList(c.String("endpoints")), Workload: c.String("workload"), Clients: c.Int("clients"),
					Duration: c.Duration("duration"), Requests: c.Int("requests"), ValueSize: c.Int("value-size"), KeySpace: c.Int("keys"),
					Client: c.String("http-client"),
				})
				if err != nil {
					return err
				}
				fmt.Println(res)
				return nil
			},
		},
	}
	for _, c := range cmds {
		addEndpoints(c)
	}
	return cmds
}

// addEndpoints gives a command (and its subcommands) the --endpoints flag.
func addEndpoints(c *cli.Command) {
	if c.Action != nil {
		c.Flags = append(c.Flags, &cli.StringFlag{Name: "endpoints", Value: "http://127.0.0.1:2379", EnvVars: []string{"CAIRN_ENDPOINTS"}, Usage: "comma-separated client URLs"})
	}
	for _, sub := range c.Subcommands {
		addEndpoints(sub)
	}
}

func newClient(c *cli.Context) *client.Client {
	return client.New(splitList(c.String("endpoints")), 4)
}

func oneArg(c *cli.Context, name string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("usage: cairn %s %s", c.Command.Name, name)
	}
	return c.Args().First(), nil
}

func printEvent(c *cli.Context, ev *api.Event) error {
	if c.String("write-out") == "json" {
		b, err := ev.MarshalJSON()
		if err != nil {
			return err
		}
		fmt.Println(string(b))
		return nil
	}
	if ev.Node == nil {
		return nil
	}
	if !ev.Node.Dir {
		fmt.Println(ev.Node.Value)
		return nil
	}
	var walk func(n *api.Node)
	walk = func(n *api.Node) {
		for _, ch := range n.Nodes {
			if ch.Dir {
				fmt.Println(ch.Key + "/")
			} else {
				fmt.Println(ch.Key)
			}
			walk(ch)
		}
	}
	walk(ev.Node)
	return nil
}

// memberIDArg is the one argument of member remove/update/promote: a
// member ID in hex, as member list prints it.
func memberIDArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("usage: cairn member %s ID", c.Command.Name)
	}
	id := c.Args().First()
	if _, err := strconv.ParseUint(id, 16, 64); err != nil {
		return "", fmt.Errorf("bad member ID arg %q, expecting an ID in hex: %w", id, err)
	}
	return id, nil
}

// memberChange runs one change on the member named by the argument and
// prints etcdctl's line, e.g. "Member 8e9e05c52164694d removed from
// cluster cdf818194e3a8c32".
func memberChange(c *cli.Context, verb string, do func(*client.Client, string) (*client.MemberResponse, error)) error {
	id, err := memberIDArg(c)
	if err != nil {
		return err
	}
	resp, err := do(newClient(c), id)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Member %s %s cluster %s\n", id, verb, resp.ClusterID)
	return nil
}

// memberAdd adds a member. Given the new member's NAME it also prints, as
// etcdctl does, the settings to start it with (as CAIRN_* variables):
// the membership without the members that have not started yet.
func memberAdd(c *cli.Context) error {
	if c.NArg() > 1 {
		return fmt.Errorf("usage: cairn member add [NAME] --peer-urls URL[,URL] [--learner]")
	}
	urls := splitList(c.String("peer-urls"))
	if len(urls) == 0 {
		return fmt.Errorf("--peer-urls is empty")
	}
	cl := newClient(c)
	resp, err := cl.AddMember(c.Context, urls, c.Bool("learner"))
	if err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "Member %s added to cluster %s\n", resp.Member.ID, resp.ClusterID)
	name := c.Args().First()
	if name == "" {
		return nil
	}
	members, err := cl.Members(c.Context)
	if err != nil {
		return fmt.Errorf("the member was added, but listing the members failed: %w", err)
	}
	var initial []string
	for _, m := range members {
		n := m.Name
		if m.ID == resp.Member.ID {
			n = name
		}
		if n == "" {
			continue
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	fmt.Fprintf(w, "\nCAIRN_NAME=%q\nCAIRN_INITIAL_CLUSTER=%q\nCAIRN_INITIAL_ADVERTISE_PEER_URLS=%q\nCAIRN_INITIAL_CLUSTER_STATE=\"existing\"\n",
		name, strings.Join(initial, ","), strings.Join(resp.Member.PeerURLs, ","))
	return nil
}

func memberList(c *cli.Context) error {
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
	defer cancel()
	cl := newClient(c)
	members, err := cl.Members(ctx)
	if err != nil {
		// A peer URL answers /members (decimal IDs) instead of /v2/members.
		var perr error
		if members, perr = cl.PeerMembers(ctx); perr != nil {
			return err
		}
	}
	w := c.App.Writer
	switch c.String("write-out") {
	case "json":
		b, err := json.Marshal(api.MemberList{Members: members})
		if err != nil {
			return err
		}
		fmt.Fprintln(w, string(b))
	case "table":
		t := tablewriter.NewWriter(w)
		t.SetHeader([]string{"ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"})
		t.SetAlignment(tablewriter.ALIGN_RIGHT)
		for _, m := range members {
			t.Append([]string{m.ID, memberStatus(m), m.Name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","), strconv.FormatBool(m.IsLearner)})
		}
		t.Render()
	case "simple":
		for _, m := range members {
			fmt.Fprintf(w, "%s, %s, %s, %s, %s, %t\n", m.ID, memberStatus(m), m.Name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","), m.IsLearner)
		}
	default:
		return fmt.Errorf("--write-out must be simple, table or json")
	}
	return nil
}

// memberStatus is "unstarted" until a member has published its name.
func memberStatus(m api.Member) string {
	if m.Name == "" {
		return "unstarted"
	}
	return "started"
}
