package storage

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"cairn/api"
)

// treeNode is one file or directory in memory. It stores only its own name
// (the full path is rebuilt when rendering), so a node costs about 80 bytes
// plus its name, value and the parent's map entry.
type treeNode struct {
	parent     *treeNode
	children   map[string]*treeNode // directories only; nil until the first child
	name       string
	value      string // files only
	created    uint64
	modified   uint64
	expiration int64 // unix ns, 0 = permanent
	heapIdx    int32 // position in Tree.exp, -1 when permanent
	dir        bool
}

func newTreeRoot() *treeNode { return &treeNode{dir: true, heapIdx: -1} }

// hidden reports whether a node with this name is left out of listings.
func treeHidden(name string) bool { return name != "" && name[0] == '_' }

// view copies n into a fresh api.Node with the given key, without children.
func (n *treeNode) view(key string) *api.Node {
	v := &api.Node{
		Key:           key,
		Dir:           n.dir,
		Expiration:    n.expiration,
		ModifiedIndex: n.modified,
		CreatedIndex:  n.created,
	}
	if !n.dir {
		v.Value = n.value
	}
	return v
}

// goneView is the event node of a delete, compareAndDelete or expire:
// key, dir if a directory, the original createdIndex and the index of the
// removal as modifiedIndex, no value (§4.4, §6.3).
func (n *treeNode) goneView(key string, index uint64) *api.Node {
	return &api.Node{
		Key:           key,
		Dir:           n.dir,
		ModifiedIndex: index,
		CreatedIndex:  n.created,
		HideValue:     true,
	}
}

// listChildren renders the visible children of dir n, whose key is key
// ("" for the root). Hidden children are skipped at every depth; nil is
// returned when nothing is visible, so empty directories have no "nodes".
func listChildren(n *treeNode, key string, recursive, sorted bool) []*api.Node {
	if len(n.children) == 0 {
		return nil
	}
	// One block for all the child nodes of this level: one allocation
	// instead of one per child.
	block := make([]api.Node, 0, len(n.children))
	for name, c := range n.children {
		if treeHidden(name) {
			continue
		}
		ck := key + "/" + name
		block = append(block, api.Node{
			Key:           ck,
			Dir:           c.dir,
			Expiration:    c.expiration,
			ModifiedIndex: c.modified,
			CreatedIndex:  c.created,
		})
		v := &block[len(block)-1]
		if c.dir {
			if recursive {
				v.Nodes = listChildren(c, ck, true, sorted)
			}
		} else {
			v.Value = c.value
		}
	}
	if len(block) == 0 {
		return nil
	}
	out := make([]*api.Node, len(block))
	for i := range block {
		out[i] = &block[i]
	}
	if sorted {
		// Siblings share the parent's key, so comparing full keys bytewise
		// is comparing names.
		slices.SortFunc(out, func(a, b *api.Node) int { return strings.Compare(a.Key, b.Key) })
	}
	return out
}

// cleanTreePath returns p as a clean absolute path ("/" or "/a/b"). It does
// not allocate when p is already clean, which is the normal case.
func cleanTreePath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

func isCleanTreePath(p string) bool {
	return p != "" && p[0] == '/' && path.Clean(p) == p
}

// splitTreePath splits a clean non-root path into its parent directory's
// path and its last segment: "/a/b" → "/a", "b"; "/a" → "/", "a".
func splitTreePath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i == 0 {
		return "/", p[1:]
	}
	return p[:i], p[i+1:]
}

// joinTreePath is the path of child name in directory dir.
func joinTreePath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// nextSegment returns the end of the segment of p that starts at i.
func nextSegment(p string, i int) int {
	if j := strings.IndexByte(p[i:], '/'); j >= 0 {
		return i + j
	}
	return len(p)
}

// lookup finds the node at clean path p. It fails with 100 naming the first
// missing segment, or 104 naming the file that stands where a directory is
// needed (etcd's internalGet).
func (t *Tree) lookup(p string) (*treeNode, *api.Error) {
	n := t.root
	if p == "/" {
		return n, nil
	}
	for i := 1; ; {
		end := nextSegment(p, i)
		if !n.dir {
			return nil, t.apiError(api.EcodeNotDir, p[:i-1])
		}
		c := n.children[p[i:end]]
		if c == nil {
			return nil, t.apiError(api.EcodeKeyNotFound, p[:end])
		}
		if end == len(p) {
			return c, nil
		}
		n, i = c, end+1
	}
}

// ensureDir returns the directory at clean path dp, creating (and
// persisting) every missing directory on the way with created = modified =
// index. A file on the way fails with 104 naming it. Once one directory has
// been created everything below it is new, so an operation that reaches this
// point cannot fail after having created something.
func (t *Tree) ensureDir(b *Batch, dp string, index uint64) (*treeNode, *api.Error, error) {
	n := t.root
	if dp == "/" {
		return n, nil, nil
	}
	for i := 1; ; {
		end := nextSegment(dp, i)
		name := dp[i:end]
		c := n.children[name]
		switch {
		case c == nil:
			if err := t.putRecord(b, dp[:end], &treeRecord{Dir: true, Created: index, Modified: index}); err != nil {
				return nil, nil, err
			}
			c = t.attach(n, name, dp[:end], true, "", index, index, 0)
		case !c.dir:
			return nil, t.apiError(api.EcodeNotDir, dp[:end]), nil
		}
		if end == len(dp) {
			return c, nil, nil
		}
		n, i = c, end+1
	}
}

// attach creates a node under parent; p is its full path (kept by the
// expiry index when the node has a TTL).
func (t *Tree) attach(parent *treeNode, name, p string, dir bool, value string, created, modified uint64, exp int64) *treeNode {
	n := &treeNode{
		parent:   parent,
		name:     name,
		value:    value,
		created:  created,
		modified: modified,
		heapIdx:  -1,
		dir:      dir,
	}
	if parent.children == nil {
		parent.children = make(map[string]*treeNode)
	}
	parent.children[name] = n
	t.setExpiration(n, p, exp)
	return n
}

// detach unlinks n from its parent and drops n and every descendant from
// the expiry index.
func (t *Tree) detach(n *treeNode) {
	t.dropExpirations(n)
	delete(n.parent.children, n.name)
}

func (t *Tree) dropExpirations(n *treeNode) {
	if n.heapIdx >= 0 {
		t.exp.remove(int(n.heapIdx))
	}
	for _, c := range n.children {
		t.dropExpirations(c)
	}
}

// record is the persisted form of n.
func (n *treeNode) record() treeRecord {
	return treeRecord{Dir: n.dir, Created: n.created, Modified: n.modified, Expiration: n.expiration, Value: n.value}
}

// putRecord writes the record of the node at p into b.
func (t *Tree) putRecord(b *Batch, p string, r *treeRecord) error {
	t.keyBuf = append(append(t.keyBuf[:0], prefixTree), p...)
	t.valBuf = appendTreeRecord(t.valBuf[:0], r)
	err := b.set(t.keyBuf, t.valBuf)
	if cap(t.valBuf) > 64<<10 {
		t.valBuf = nil // do not pin the buffer of one huge value
	}
	if err != nil {
		return fmt.Errorf("persist node %q: %w", p, err)
	}
	return nil
}

// deleteRecords removes the records of n (at p) and of its whole subtree:
// "/a" itself plus the range ["/a/", "/a0"), '0' being '/'+1.
func (t *Tree) deleteRecords(b *Batch, p string, n *treeNode) error {
	t.keyBuf = append(append(t.keyBuf[:0], prefixTree), p...)
	if err := b.del(t.keyBuf); err != nil {
		return fmt.Errorf("delete node %q: %w", p, err)
	}
	if len(n.children) == 0 {
		return nil
	}
	start := append(append([]byte{prefixTree}, p...), '/')
	end := append(append([]byte{prefixTree}, p...), '/'+1)
	if err := b.delRange(start, end); err != nil {
		return fmt.Errorf("delete subtree of %q: %w", p, err)
	}
	return nil
}

func (t *Tree) apiError(code int, cause string) *api.Error {
	return api.NewError(code, cause, t.index.Load())
}
