package storage

import "fmt"

// metaKey builds a key in the meta namespace (0x02).
func metaKey(name string) []byte {
	return append([]byte{prefixMeta}, name...)
}

// GetMeta reads a member-local metadata record ("cluster-id", …).
func (e *Engine) GetMeta(name string) (value []byte, found bool, err error) {
	v, ok, err := e.get(metaKey(name))
	if err != nil {
		return nil, false, fmt.Errorf("read meta %q: %w", name, err)
	}
	return v, ok, nil
}

// SetMeta writes a metadata record and syncs it.
func (e *Engine) SetMeta(name string, value []byte) error {
	b := e.NewBatch()
	defer b.Close()
	if err := b.set(metaKey(name), value); err != nil {
		return err
	}
	return e.Commit(b, true)
}
