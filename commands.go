package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
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
			Subcommands: []*cli.Command{{
				Name: "list", Usage: "list the members (works against client or peer URLs)",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "write-out", Aliases: []string{"w"}, Value: "simple", Usage: "simple, table or json"}},
				Action: memberList,
			}},
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
	switch c.String("write-out") {
	case "json":
		b, err := json.Marshal(api.MemberList{Members: members})
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	case "table":
		t := tablewriter.NewWriter(os.Stdout)
		t.SetHeader([]string{"ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"})
		t.SetAlignment(tablewriter.ALIGN_RIGHT)
		for _, m := range members {
			t.Append([]string{m.ID, memberStatus(m), m.Name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","), "false"})
		}
		t.Render()
	case "simple":
		for _, m := range members {
			fmt.Printf("%s, %s, %s, %s, %s, false\n", m.ID, memberStatus(m), m.Name, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","))
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
