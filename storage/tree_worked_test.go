package storage

import (
	"testing"
	"time"
)

// TestTreeWorkedExamples replays the key-space requests of the spec's worked
// examples (§11, W2–W39 and §11.1) in order, with the exact indexes and
// bodies observed on etcd. Indexes 1–3, which etcd spends on internal
// bookkeeping, go to hidden keys here so that they stay out of listings.
func TestTreeWorkedExamples(t *testing.T) {
	const (
		exp32 = 24954115175 * time.Nanosecond // W32 /tmp: 07:32:24.954115175
		exp36 = 56602505250 * time.Nanosecond // W36 /session: 07:32:56.60250525
		exp37 = 87024903117 * time.Nanosecond // W37 refreshed: 07:33:27.024903117
		exp38 = 57360246325 * time.Nanosecond // W38 /tdir: 07:32:57.360246325
		exp39 = 87500000000 * time.Nanosecond // W39 (D-1) new directory TTL
	)
	steps := []treeStep{
		{cmd: tcSet("/_bootstrap1", "")},
		{cmd: tcSet("/_bootstrap2", "")},
		{cmd: tcSet("/_bootstrap3", "")},
		// W2
		{get: "/", want: `{"action":"get","node":{"dir":true}}`},
		// W3, W4
		{cmd: tcSet("/message", "Hello"), want: `{"action":"set","node":{"key":"/message","value":"Hello","modifiedIndex":4,"createdIndex":4}}`},
		{cmd: tcSet("/message", "Hello world"), want: `{"action":"set","node":{"key":"/message","value":"Hello world","modifiedIndex":5,"createdIndex":5},"prevNode":{"key":"/message","value":"Hello","modifiedIndex":4,"createdIndex":4}}`},
		// W6, W7
		{cmd: Cmd{Op: OpCreate, Path: "/message", Value: "x"}, want: `{"errorCode":105,"message":"Key already exists","cause":"/message","index":5}`},
		{cmd: Cmd{Op: OpCreate, Path: "/newkey", Value: "first"}, want: `{"action":"create","node":{"key":"/newkey","value":"first","modifiedIndex":6,"createdIndex":6}}`},
		// W8, W9, W10
		{cmd: Cmd{Op: OpUpdate, Path: "/message", Value: "Hi"}, want: `{"action":"update","node":{"key":"/message","value":"Hi","modifiedIndex":7,"createdIndex":5},"prevNode":{"key":"/message","value":"Hello world","modifiedIndex":5,"createdIndex":5}}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Bye", PrevValue: "Hi"}, want: `{"action":"compareAndSwap","node":{"key":"/message","value":"Bye","modifiedIndex":8,"createdIndex":5},"prevNode":{"key":"/message","value":"Hi","modifiedIndex":7,"createdIndex":5}}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Again", PrevValue: "Nope", PrevIndex: 1}, want: `{"errorCode":101,"message":"Compare failed","cause":"[Nope != Bye] [1 != 8]","index":8}`},
		{cmd: Cmd{Op: OpCAS, Path: "/message", Value: "Again", PrevValue: "Nope"}, want: `{"errorCode":101,"message":"Compare failed","cause":"[Nope != Bye]","index":8}`},
		// W11, W12 (noValueOnSuccess is the HTTP layer's business)
		{cmd: tcSet("/quiet", "shh"), want: `{"action":"set","node":{"key":"/quiet","value":"shh","modifiedIndex":9,"createdIndex":9}}`},
		{cmd: tcSet("/lock", "owner1"), want: `{"action":"set","node":{"key":"/lock","value":"owner1","modifiedIndex":10,"createdIndex":10}}`},
		// W13, W14
		{cmd: Cmd{Op: OpCAD, Path: "/lock", PrevValue: "owner2"}, want: `{"errorCode":101,"message":"Compare failed","cause":"[owner2 != owner1]","index":10}`},
		{cmd: Cmd{Op: OpCAD, Path: "/lock", PrevIndex: 10}, want: `{"action":"compareAndDelete","node":{"key":"/lock","modifiedIndex":11,"createdIndex":10},"prevNode":{"key":"/lock","value":"owner1","modifiedIndex":10,"createdIndex":10}}`},
		// W15–W18
		{cmd: tcDir("/dir"), want: `{"action":"set","node":{"key":"/dir","dir":true,"modifiedIndex":12,"createdIndex":12}}`},
		{cmd: tcSet("/dir/b", "2"), want: `{"action":"set","node":{"key":"/dir/b","value":"2","modifiedIndex":13,"createdIndex":13}}`},
		{cmd: tcSet("/dir/a", "1"), want: `{"action":"set","node":{"key":"/dir/a","value":"1","modifiedIndex":14,"createdIndex":14}}`},
		{cmd: tcSet("/dir/sub/c", "3"), want: `{"action":"set","node":{"key":"/dir/sub/c","value":"3","modifiedIndex":15,"createdIndex":15}}`},
		// W19 and its non-recursive variant
		{get: "/dir", rec: true, sorted: true, want: `{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":14,"createdIndex":14},{"key":"/dir/b","value":"2","modifiedIndex":13,"createdIndex":13},{"key":"/dir/sub","dir":true,"nodes":[{"key":"/dir/sub/c","value":"3","modifiedIndex":15,"createdIndex":15}],"modifiedIndex":15,"createdIndex":15}],"modifiedIndex":12,"createdIndex":12}}`},
		{get: "/dir", sorted: true, want: `{"action":"get","node":{"key":"/dir","dir":true,"nodes":[{"key":"/dir/a","value":"1","modifiedIndex":14,"createdIndex":14},{"key":"/dir/b","value":"2","modifiedIndex":13,"createdIndex":13},{"key":"/dir/sub","dir":true,"modifiedIndex":15,"createdIndex":15}],"modifiedIndex":12,"createdIndex":12}}`},
		// W20, W21, W23
		{cmd: Cmd{Op: OpDelete, Path: "/dir"}, want: `{"errorCode":102,"message":"Not a file","cause":"/dir","index":15}`},
		{cmd: Cmd{Op: OpDelete, Path: "/dir", Dir: true}, want: `{"errorCode":108,"message":"Directory not empty","cause":"/dir","index":15}`},
		{cmd: Cmd{Op: OpDelete, Path: "/dir", Recursive: true}, want: `{"action":"delete","node":{"key":"/dir","dir":true,"modifiedIndex":16,"createdIndex":12},"prevNode":{"key":"/dir","dir":true,"modifiedIndex":12,"createdIndex":12}}`},
		// W24, W25
		{cmd: Cmd{Op: OpCreateInOrder, Path: "/queue", Value: "job1"}, want: `{"action":"create","node":{"key":"/queue/00000000000000000017","value":"job1","modifiedIndex":17,"createdIndex":17}}`},
		{cmd: Cmd{Op: OpCreateInOrder, Path: "/queue", Value: "job2"}, want: `{"action":"create","node":{"key":"/queue/00000000000000000018","value":"job2","modifiedIndex":18,"createdIndex":18}}`},
		// W27, the unshown write at 20, W30, W31
		{cmd: tcSet("/watched", "v1"), want: `{"action":"set","node":{"key":"/watched","value":"v1","modifiedIndex":19,"createdIndex":19}}`},
		{cmd: tcSet("/other", "x")},
		{cmd: tcSet("/stream", "s1"), want: `{"action":"set","node":{"key":"/stream","value":"s1","modifiedIndex":21,"createdIndex":21}}`},
		{cmd: tcSet("/stream", "s2"), want: `{"action":"set","node":{"key":"/stream","value":"s2","modifiedIndex":22,"createdIndex":22},"prevNode":{"key":"/stream","value":"s1","modifiedIndex":21,"createdIndex":21}}`},
		// 23–24 and the recursive GET of /app
		{cmd: tcSet("/app/_internal", "i")},
		{cmd: tcSet("/app/public", "p")},
		{get: "/app", rec: true, want: `{"action":"get","node":{"key":"/app","dir":true,"nodes":[{"key":"/app/public","value":"p","modifiedIndex":24,"createdIndex":24}],"modifiedIndex":23,"createdIndex":23}}`},
		{get: "/app/_internal", want: `{"action":"get","node":{"key":"/app/_internal","value":"i","modifiedIndex":23,"createdIndex":23}}`},
		// W32, W34, W35
		{cmd: tcTTL(tcSet("/tmp", "soon"), exp32), now: exp32 - 1500*time.Millisecond, want: `{"action":"set","node":{"key":"/tmp","value":"soon","expiration":"2026-11-25T07:32:24.954115175Z","ttl":2,"modifiedIndex":25,"createdIndex":25}}`},
		{get: "/tmp", now: exp32 - 300*time.Millisecond, want: `{"action":"get","node":{"key":"/tmp","value":"soon","expiration":"2026-11-25T07:32:24.954115175Z","ttl":1,"modifiedIndex":25,"createdIndex":25}}`},
		{cmd: tcExpire(exp32 + 100*time.Millisecond), now: exp32 + 100*time.Millisecond, want: `{"action":"expire","node":{"key":"/tmp","modifiedIndex":26,"createdIndex":25},"prevNode":{"key":"/tmp","value":"soon","expiration":"2026-11-25T07:32:24.954115175Z","modifiedIndex":25,"createdIndex":25}}`},
		{get: "/tmp", want: `{"errorCode":100,"message":"Key not found","cause":"/tmp","index":26}`},
		// W36, W37
		{cmd: tcTTL(tcSet("/session", "s"), exp36), now: exp36 - 29500*time.Millisecond, want: `{"action":"set","node":{"key":"/session","value":"s","expiration":"2026-11-25T07:32:56.60250525Z","ttl":30,"modifiedIndex":27,"createdIndex":27}}`},
		{cmd: tcTTL(Cmd{Op: OpUpdate, Path: "/session", Refresh: true}, exp37), now: exp36 - 29500*time.Millisecond, refresh: true, want: `{"action":"update","node":{"key":"/session","value":"s","expiration":"2026-11-25T07:33:27.024903117Z","ttl":60,"modifiedIndex":28,"createdIndex":27},"prevNode":{"key":"/session","value":"s","expiration":"2026-11-25T07:32:56.60250525Z","ttl":30,"modifiedIndex":27,"createdIndex":27}}`},
		// W38, W39 as the contract answers it [D-1]
		{cmd: tcTTL(tcDir("/tdir"), exp38), now: exp38 - 29600*time.Millisecond, want: `{"action":"set","node":{"key":"/tdir","dir":true,"expiration":"2026-11-25T07:32:57.360246325Z","ttl":30,"modifiedIndex":29,"createdIndex":29}}`},
		{cmd: tcTTL(Cmd{Op: OpUpdate, Path: "/tdir", Dir: true}, exp39), now: exp38 - 29600*time.Millisecond, want: `{"action":"update","node":{"key":"/tdir","dir":true,"expiration":"2026-11-25T07:33:27.5Z","ttl":60,"modifiedIndex":30,"createdIndex":29},"prevNode":{"key":"/tdir","dir":true,"expiration":"2026-11-25T07:32:57.360246325Z","ttl":30,"modifiedIndex":29,"createdIndex":29}}`},
		// §11.1
		{cmd: tcSet("/", "x"), want: `{"errorCode":107,"message":"Root is read only","cause":"/","index":30}`},
		{get: "/no/such/key", want: `{"errorCode":100,"message":"Key not found","cause":"/no","index":30}`},
		{get: "/message/child", want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":30}`},
		{cmd: Cmd{Op: OpCreateInOrder, Path: "/message", Value: "x"}, want: `{"errorCode":104,"message":"Not a directory","cause":"/message","index":30}`},
		{get: "/message/", want: `{"action":"get","node":{"key":"/message","value":"Bye","modifiedIndex":8,"createdIndex":5}}`},
	}
	runTreeSteps(t, newTreeHarness(t), steps)
}
