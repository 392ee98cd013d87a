package storage

import (
	"strconv"

	"cairn/api"
)

// The write operations of the v2 store (§4.2–§4.4, §6.4, §6.5), modelled on
// etcd's v2store: each takes a clean path, returns the event or the API
// error, and writes what it changes into b. They run under Tree.mu.

// applySet is PUT without conditions: write a file, or an empty directory
// with Dir, replacing a file but never a directory. With Refresh the key
// must exist, its value is kept and the node is still recreated (new
// createdIndex, action "set").
func (t *Tree) applySet(b *Batch, p string, c *Cmd) (*api.Event, *api.Error, error) {
	if p == "/" {
		return nil, t.apiError(api.EcodeRootROnly, "/"), nil
	}
	value := c.Value
	if c.Refresh {
		old, aerr := t.lookup(p)
		if aerr != nil {
			return nil, aerr, nil
		}
		value = old.value
	}
	next := t.index.Load() + 1
	dp, name := splitTreePath(p)
	parent, aerr, err := t.ensureDir(b, dp, next)
	if aerr != nil || err != nil {
		return nil, aerr, err
	}
	var prev *api.Node
	if old := parent.children[name]; old != nil {
		if old.dir {
			return nil, t.apiError(api.EcodeNotFile, p), nil
		}
		prev = old.view(p)
		t.detach(old) // a file: its record is overwritten below
	}
	n, err := t.create(b, parent, name, p, c.Dir, value, next, c.Expiration)
	if err != nil {
		return nil, nil, err
	}
	t.index.Store(next)
	return &api.Event{Action: api.ActionSet, Node: n.view(p), PrevNode: prev, Refresh: c.Refresh, Index: next}, nil, nil
}

// applyCreate is PUT prevExist=false, or POST when inOrder: the child is
// then named after the new store index. Missing parents are created.
// Refresh has no effect on a create (§6.4).
func (t *Tree) applyCreate(b *Batch, p string, c *Cmd, inOrder bool) (*api.Event, *api.Error, error) {
	next := t.index.Load() + 1
	if inOrder {
		p = joinTreePath(p, treeInOrderName(next))
	}
	if p == "/" {
		return nil, t.apiError(api.EcodeRootROnly, "/"), nil
	}
	dp, name := splitTreePath(p)
	parent, aerr, err := t.ensureDir(b, dp, next)
	if aerr != nil || err != nil {
		return nil, aerr, err
	}
	if parent.children[name] != nil {
		return nil, t.apiError(api.EcodeNodeExist, p), nil
	}
	n, err := t.create(b, parent, name, p, c.Dir, c.Value, next, c.Expiration)
	if err != nil {
		return nil, nil, err
	}
	t.index.Store(next)
	return &api.Event{Action: api.ActionCreate, Node: n.view(p), Index: next}, nil, nil
}

// create persists and attaches a new node with created = modified = index.
func (t *Tree) create(b *Batch, parent *treeNode, name, p string, dir bool, value string, index uint64, exp int64) (*treeNode, error) {
	if dir {
		value = ""
	}
	rec := treeRecord{Dir: dir, Created: index, Modified: index, Expiration: exp, Value: value}
	if err := t.putRecord(b, p, &rec); err != nil {
		return nil, err
	}
	return t.attach(parent, name, p, dir, value, index, index, exp), nil
}

// treeInOrderName is the name of a POSTed child: the index as %020d.
func treeInOrderName(index uint64) string {
	var buf [20]byte
	digits := strconv.AppendUint(buf[:0], index, 10)
	pad := 20 - len(digits)
	copy(buf[pad:], digits)
	for i := 0; i < pad; i++ {
		buf[i] = '0'
	}
	return string(buf[:])
}

// applyUpdate is PUT prevExist=true: the node must exist; createdIndex is
// kept and the TTL is set or cleared. A directory accepts only an empty
// value, which makes the update a TTL change [D-1]. Cmd.Dir plays no part,
// as in etcd: the HTTP layer decides which value it sends.
func (t *Tree) applyUpdate(b *Batch, p string, c *Cmd) (*api.Event, *api.Error, error) {
	if p == "/" {
		return nil, t.apiError(api.EcodeRootROnly, "/"), nil
	}
	n, aerr := t.lookup(p)
	if aerr != nil {
		return nil, aerr, nil
	}
	if n.dir && c.Value != "" {
		return nil, t.apiError(api.EcodeNotFile, p), nil
	}
	value := c.Value
	if c.Refresh {
		value = n.value
	}
	ev, err := t.rewrite(b, n, p, api.ActionUpdate, value, c)
	return ev, nil, err
}

// applyCAS is compare-and-swap: files only; every supplied condition must
// hold; createdIndex is kept and the TTL set or cleared. Cmd.Dir is ignored.
func (t *Tree) applyCAS(b *Batch, p string, c *Cmd) (*api.Event, *api.Error, error) {
	if p == "/" {
		return nil, t.apiError(api.EcodeRootROnly, "/"), nil
	}
	n, aerr := t.comparedFile(p, c)
	if aerr != nil {
		return nil, aerr, nil
	}
	value := c.Value
	if c.Refresh {
		value = n.value
	}
	ev, err := t.rewrite(b, n, p, api.ActionCompareAndSwap, value, c)
	return ev, nil, err
}

// rewrite gives n (at p) a new value (ignored for directories), the next
// store index as modifiedIndex and the command's expiration.
func (t *Tree) rewrite(b *Batch, n *treeNode, p, action, value string, c *Cmd) (*api.Event, error) {
	next := t.index.Load() + 1
	prev := n.view(p)
	if n.dir {
		value = ""
	}
	rec := treeRecord{Dir: n.dir, Created: n.created, Modified: next, Expiration: c.Expiration, Value: value}
	if err := t.putRecord(b, p, &rec); err != nil {
		return nil, err
	}
	n.value = value
	n.modified = next
	t.setExpiration(n, p, c.Expiration)
	t.index.Store(next)
	return &api.Event{Action: action, Node: n.view(p), PrevNode: prev, Refresh: c.Refresh, Index: next}, nil
}

// compare checks prevValue ("" = no check) and prevIndex (0 = no check)
// against n. The 101 cause lists only the failed conditions, in etcd's
// "[given != current]" form.
func (t *Tree) compare(n *treeNode, c *Cmd) *api.Error {
	valueOK := c.PrevValue == "" || c.PrevValue == n.value
	indexOK := c.PrevIndex == 0 || c.PrevIndex == n.modified
	var cause string
	switch {
	case valueOK && indexOK:
		return nil
	case indexOK:
		cause = "[" + c.PrevValue + " != " + n.value + "]"
	case valueOK:
		cause = "[" + strconv.FormatUint(c.PrevIndex, 10) + " != " + strconv.FormatUint(n.modified, 10) + "]"
	default:
		cause = "[" + c.PrevValue + " != " + n.value + "] [" +
			strconv.FormatUint(c.PrevIndex, 10) + " != " + strconv.FormatUint(n.modified, 10) + "]"
	}
	return t.apiError(api.EcodeTestFailed, cause)
}

// applyDelete is DELETE without conditions. Files go with any flags; a
// directory needs Dir (or Recursive) when empty and Recursive otherwise
// (hidden children count). A recursive delete is one event.
func (t *Tree) applyDelete(b *Batch, p string, c *Cmd) (*api.Event, *api.Error, error) {
	if p == "/" {
		return nil, t.apiError(api.EcodeRootROnly, "/"), nil
	}
	n, aerr := t.lookup(p)
	if aerr != nil {
		return nil, aerr, nil
	}
	if n.dir {
		if !c.Dir && !c.Recursive {
			return nil, t.apiError(api.EcodeNotFile, p), nil
		}
		if len(n.children) != 0 && !c.Recursive {
			return nil, t.apiError(api.EcodeDirNotEmpty, p), nil
		}
	}
	ev, err := t.remove(b, n, p, api.ActionDelete)
	return ev, nil, err
}

// comparedFile looks up the file at p and checks c's prevValue/prevIndex
// against it: the common part of compare-and-swap and compare-and-delete.
func (t *Tree) comparedFile(p string, c *Cmd) (*treeNode, *api.Error) {
	n, aerr := t.lookup(p)
	if aerr != nil {
		return nil, aerr
	}
	if n.dir {
		return nil, t.apiError(api.EcodeNotFile, p)
	}
	if aerr := t.compare(n, c); aerr != nil {
		return nil, aerr
	}
	return n, nil
}

// applyCAD is compare-and-delete: files only. On the root it answers 102
// without a cause, as etcd does (its cause is the internal prefix, trimmed).
func (t *Tree) applyCAD(b *Batch, p string, c *Cmd) (*api.Event, *api.Error, error) {
	if p == "/" {
		return nil, t.apiError(api.EcodeNotFile, ""), nil
	}
	n, aerr := t.comparedFile(p, c)
	if aerr != nil {
		return nil, aerr, nil
	}
	ev, err := t.remove(b, n, p, api.ActionCompareAndDelete)
	return ev, nil, err
}

// remove deletes n (at p) with its whole subtree, taking the next store
// index, and returns the one event describing it.
func (t *Tree) remove(b *Batch, n *treeNode, p, action string) (*api.Event, error) {
	next := t.index.Load() + 1
	if err := t.deleteRecords(b, p, n); err != nil {
		return nil, err
	}
	ev := &api.Event{Action: action, Node: n.goneView(p, next), PrevNode: n.view(p), Index: next}
	t.detach(n)
	t.index.Store(next)
	return ev, nil
}
