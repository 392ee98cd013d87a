package consensus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func sampleMessages() []*raftpb.Message {
	return []*raftpb.Message{
		{Type: raftpb.MsgHeartbeat.Enum(), To: new(uint64(2)), From: new(uint64(1)), Term: new(uint64(3)), Commit: new(uint64(7))},
		{Type: raftpb.MsgApp.Enum(), To: new(uint64(2)), From: new(uint64(1)), Term: new(uint64(3)), Index: new(uint64(6)), LogTerm: new(uint64(3)),
			Entries: []*raftpb.Entry{{Index: new(uint64(7)), Term: new(uint64(3)), Data: []byte("hello")}, {Index: new(uint64(8)), Term: new(uint64(3))}}},
		{Type: raftpb.MsgReadIndex.Enum(), To: new(uint64(2)), From: new(uint64(1)), Entries: []*raftpb.Entry{{Data: []byte{0, 0, 0, 0, 0, 0, 0, 9}}}},
	}
}

func TestFramesRoundTrip(t *testing.T) {
	var buf []byte
	msgs := sampleMessages()
	for _, m := range msgs {
		var err error
		if buf, err = appendFrame(buf, m); err != nil {
			t.Fatal(err)
		}
	}
	var got []*raftpb.Message
	if err := readMessages(bytes.NewReader(buf), func(m *raftpb.Message) error { got = append(got, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("decoded %d messages, want %d", len(got), len(msgs))
	}
	for i := range msgs {
		if !proto.Equal(got[i], msgs[i]) {
			t.Fatalf("message %d: got %v, want %v", i, got[i], msgs[i])
		}
	}
	// Truncated anywhere inside a frame: an error, never a panic or a
	// silently shorter batch.
	for cut := 1; cut < len(buf); cut++ {
		n := 0
		err := readMessages(bytes.NewReader(buf[:cut]), func(*raftpb.Message) error { n++; return nil })
		boundary := false
		off := 0
		for off < cut {
			off += 4 + int(binary.BigEndian.Uint32(buf[off:]))
			if off == cut {
				boundary = true
			}
		}
		if boundary != (err == nil) {
			t.Fatalf("cut at %d: boundary %v, err %v", cut, boundary, err)
		}
	}
}

func TestFrameLimit(t *testing.T) {
	b := binary.BigEndian.AppendUint32(nil, maxFrameBytes+1)
	err := readMessages(bytes.NewReader(b), func(*raftpb.Message) error { return nil })
	if !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("got %v, want errFrameTooLarge", err)
	}
}

func TestSnapshotStreamRoundTrip(t *testing.T) {
	for _, staged := range []bool{false, true} {
		var stage *SnapshotStage
		if staged {
			var err error
			if stage, err = NewSnapshotStage(t.TempDir()); err != nil {
				t.Fatal(err)
			}
		}
		for _, size := range []int{0, 1, snapshotChunkBytes - 1, snapshotChunkBytes, 3*snapshotChunkBytes + 17} {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i * 7)
			}
			m := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), To: new(uint64(3)), From: new(uint64(1)), Term: new(uint64(2)),
				Snapshot: &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(100)), Term: new(uint64(2)),
					ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}}}
			var buf bytes.Buffer
			if n, err := writeSnapshot(&buf, m, nil); err != nil || n != int64(size) {
				t.Fatalf("size %d: wrote %d bytes of data, %v", size, n, err)
			}
			if len(m.GetSnapshot().GetData()) != size {
				t.Fatal("writeSnapshot changed the message")
			}
			got, n, err := readSnapshot(bytes.NewReader(buf.Bytes()), 1<<30, stage)
			if err != nil || n != int64(size) {
				t.Fatalf("staged %v, size %d: read %d bytes, %v", staged, size, n, err)
			}
			if staged {
				got.Snapshot.Data = readStaged(t, stage, got.GetSnapshot().GetData())
			}
			if !proto.Equal(got, m) {
				t.Fatalf("staged %v, size %d: snapshot message differs", staged, size)
			}
			over, _, err := readSnapshot(bytes.NewReader(buf.Bytes()), int64(size)-1, stage)
			if size > 0 && !errors.Is(err, errFrameTooLarge) {
				t.Fatalf("size %d over the limit: %v", size, err)
			}
			if err == nil && staged { // no data, so no limit to pass
				readStaged(t, stage, over.GetSnapshot().GetData())
			}
			if size > 0 {
				bad := bytes.Clone(buf.Bytes())
				bad[len(bad)-9] ^= 1 // last data byte, before the empty frame and the checksum
				if _, _, err := readSnapshot(bytes.NewReader(bad), 1<<30, stage); !errors.Is(err, errBadFrame) {
					t.Fatalf("size %d corrupted: %v", size, err)
				}
				for _, cut := range []int{1, 5, 8, 9} { // in the checksum, the end frame, the data
					if _, _, err := readSnapshot(bytes.NewReader(buf.Bytes()[:buf.Len()-cut]), 1<<30, stage); err == nil {
						t.Fatalf("size %d truncated by %d bytes: no error", size, cut)
					}
				}
			}
			if staged {
				if names := stagedFiles(t, stage); len(names) != 0 {
					t.Fatalf("size %d: failed reads left staged files %v", size, names)
				}
			}
		}
	}
}

// readStaged returns the data of the staged file ref names, and removes it.
func readStaged(t *testing.T, stage *SnapshotStage, ref []byte) []byte {
	t.Helper()
	f, staged, err := stage.open(ref)
	if err != nil || !staged {
		t.Fatalf("staged reference %q: staged %v, %v", ref, staged, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	stage.remove(f)
	return data
}

func stagedFiles(t *testing.T, stage *SnapshotStage) []string {
	t.Helper()
	entries, err := os.ReadDir(stage.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestSnapshotStage: data only names a staged file with this process's
// token (a peer's data that looks like a reference stays data), a restore
// clears the files at or below its index, and a new stage clears what a
// crashed run left.
func TestSnapshotStage(t *testing.T) {
	dir := t.TempDir()
	stage, err := NewSnapshotStage(dir)
	if err != nil {
		t.Fatal(err)
	}
	var refs [][]byte
	for _, index := range []uint64{5, 9, 12} {
		f, err := stage.create(index)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("data"); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		refs = append(refs, stage.reference(f))
	}
	other, err := NewSnapshotStage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{
		[]byte("plain snapshot data"),
		[]byte(stagedPrefix + "0123/x.snap"),              // another token
		[]byte(stagedPrefix + stage.token + "/../x.snap"), // a path out of the stage
		[]byte(stagedPrefix + stage.token + "/name"),      // not a staged name
	} {
		if _, staged, err := stage.open(data); staged || err != nil {
			t.Errorf("%q taken for a staged file: %v", data, err)
		}
	}
	if _, staged, _ := other.open(refs[0]); staged {
		t.Error("another stage's reference opened")
	}
	if got := readStaged(t, stage, refs[2]); string(got) != "data" {
		t.Fatalf("staged data %q", got)
	}
	if _, staged, err := stage.open(refs[2]); !staged || err == nil {
		t.Fatalf("a removed staged file opened: staged %v, %v", staged, err)
	}
	stage.removeUpTo(5)
	if names := stagedFiles(t, stage); len(names) != 1 || !strings.HasPrefix(names[0], "0000000000000009-") {
		t.Fatalf("after a restore at 5: %v", names)
	}
	stage.drop([]byte("plain snapshot data")) // not a reference: nothing happens
	if names := stagedFiles(t, stage); len(names) != 1 {
		t.Fatalf("dropping plain data removed a staged file: %v", names)
	}
	stage.drop(refs[1])
	if _, staged, err := stage.open(refs[1]); !staged || err == nil {
		t.Fatalf("a dropped staged file opened: staged %v, %v", staged, err)
	}
	// A file a crashed run left behind.
	if f, err := stage.create(20); err != nil {
		t.Fatal(err)
	} else {
		_ = f.Close()
	}
	if _, err := NewSnapshotStage(dir); err != nil {
		t.Fatal(err)
	}
	if names := stagedFiles(t, stage); len(names) != 0 {
		t.Fatalf("a new stage left %v", names)
	}
}

// FuzzPeerMessage: the transport's decoders never panic on garbage, and
// whatever they accept re-encodes to frames that decode the same.
func FuzzPeerMessage(f *testing.F) {
	var batch []byte
	for _, m := range sampleMessages() {
		batch, _ = appendFrame(batch, m)
	}
	f.Add(batch)
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 5, 8, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	var snap bytes.Buffer
	_, _ = writeSnapshot(&snap, &raftpb.Message{Type: raftpb.MsgSnap.Enum(), To: new(uint64(1)), Snapshot: &raftpb.Snapshot{Data: []byte("abc"), Metadata: &raftpb.SnapshotMetadata{}}}, nil)
	f.Add(snap.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		var got []*raftpb.Message
		_ = readMessages(bytes.NewReader(b), func(m *raftpb.Message) error { got = append(got, m); return nil })
		var again []byte
		for _, m := range got {
			var err error
			if again, err = appendFrame(again, m); err != nil {
				t.Fatalf("re-encode %v: %v", m, err)
			}
		}
		var back []*raftpb.Message
		if err := readMessages(bytes.NewReader(again), func(m *raftpb.Message) error { back = append(back, m); return nil }); err != nil {
			t.Fatalf("decode re-encoded batch: %v", err)
		}
		if len(back) != len(got) {
			t.Fatalf("re-encoded batch has %d messages, want %d", len(back), len(got))
		}
		for i := range got {
			if !proto.Equal(back[i], got[i]) {
				t.Fatalf("message %d changed in a round trip", i)
			}
		}
		if m, _, err := readSnapshot(bytes.NewReader(b), 1<<20, nil); err == nil {
			var w bytes.Buffer
			if _, err := writeSnapshot(&w, m, nil); err != nil {
				t.Fatal(err)
			}
			m2, _, err := readSnapshot(&w, 1<<20, nil)
			if err != nil || !proto.Equal(m, m2) {
				t.Fatalf("snapshot round trip: %v", err)
			}
		}
		_, _ = readFrame(io.LimitReader(bytes.NewReader(b), int64(len(b))), nil, 1<<10)
	})
}

// TestSnapshotStreamFromView: a snapshot exported from a view as it is
// written (several chunks) reads back as the same data an in-memory export
// gives, and a failing writer ends the export with an error.
func TestSnapshotStreamFromView(t *testing.T) {
	m := startSingle(t, vfs.NewMem(), Config{})
	defer m.close()
	ctx := ctxTimeout(t, 30*time.Second)
	value := strings.Repeat("v", 1000)
	for i := range 3000 { // about 3 MiB: two chunks and a part, at least
		if _, err := m.node.Propose(ctx, set(fmt.Sprintf("/k%04d", i), value)); err != nil {
			t.Fatal(err)
		}
	}
	header := []byte("membership header")
	inMemory := &SnapshotSource{header: header, view: m.tree.View()}
	want, err := inMemory.Data()
	inMemory.Release()
	if err != nil {
		t.Fatal(err)
	}
	msg := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), To: new(uint64(2)), From: new(uint64(1)), Term: new(uint64(1)),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(3000)), Term: new(uint64(1))}}}
	src := &SnapshotSource{header: header, view: m.tree.View()}
	defer src.Release()
	var buf bytes.Buffer
	n, err := writeSnapshot(&buf, msg, src)
	if err != nil || n != int64(len(want)) || len(want) < 2*snapshotChunkBytes {
		t.Fatalf("streamed %d bytes (%v), the export has %d", n, err, len(want))
	}
	got, _, err := readSnapshot(&buf, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.GetSnapshot().GetData(), want) {
		t.Fatal("streamed snapshot data differs from the in-memory export")
	}

	failing := &SnapshotSource{header: header, view: m.tree.View()}
	defer failing.Release()
	if _, err := writeSnapshot(&limitedWriter{left: 2 * snapshotChunkBytes}, msg, failing); err == nil {
		t.Fatal("an export into a writer that failed half way reported success")
	}
}

// limitedWriter fails once left bytes were written.
type limitedWriter struct{ left int }

func (w *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		return 0, errors.New("connection reset")
	}
	w.left -= len(p)
	return len(p), nil
}
