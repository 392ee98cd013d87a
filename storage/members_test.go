package storage

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestMemberCodecRoundTrip(t *testing.T) {
	for _, m := range []Member{
		{ID: 1},
		{ID: 0xb5179d13d0285315, Name: "infra1", PeerURLs: []string{"http://a:2380", "http://b:2380"}, ClientURLs: []string{"http://a:2379"}},
		{ID: 42, PeerURLs: []string{"http://c:2380"}, IsLearner: true},
	} {
		got, err := DecodeMember(AppendMember(nil, &m))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestMembersPersist(t *testing.T) {
	eng, err := Open("data", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	b := eng.NewBatch()
	for _, m := range []Member{{ID: 1, Name: "a"}, {ID: 2, Name: "b"}, {ID: 3}} {
		if err := b.PutMember(&m); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.RemoveMember(2); err != nil {
		t.Fatal(err)
	}
	if err := eng.Commit(b, true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	ms, removed, err := eng.LoadMembers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].ID != 1 || ms[1].ID != 3 || !reflect.DeepEqual(removed, []uint64{2}) {
		t.Fatalf("loaded %+v removed %v", ms, removed)
	}

	b = eng.NewBatch()
	if err := b.ReplaceMembers([]Member{{ID: 9, Name: "z"}}, []uint64{7, 8}); err != nil {
		t.Fatal(err)
	}
	if err := eng.Commit(b, true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	ms, removed, err = eng.LoadMembers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != 9 || !reflect.DeepEqual(removed, []uint64{7, 8}) {
		t.Fatalf("after replace: %+v removed %v", ms, removed)
	}
}

// TestMemberCodecOnDisk pins the encoding of records already on disk: a
// voter's record (every record written before learners could be added)
// has a zero flags byte and decodes as a voter; bit 0 marks a learner;
// other bits are refused.
func TestMemberCodecOnDisk(t *testing.T) {
	voter := []byte{1, 7, 0, 1, 'n', 1, 10, 'h', 't', 't', 'p', ':', '/', '/', 'x', ':', '1', 0}
	m, err := DecodeMember(voter)
	if err != nil || m.IsLearner || m.ID != 7 || m.Name != "n" || !reflect.DeepEqual(m.PeerURLs, []string{"http://x:1"}) {
		t.Fatalf("voter record: %+v, %v", m, err)
	}
	if got := AppendMember(nil, &m); !bytes.Equal(got, voter) {
		t.Fatalf("a voter encodes as %v, want %v", got, voter)
	}
	learner := bytes.Clone(voter)
	learner[2] = 1
	m.IsLearner = true
	if got := AppendMember(nil, &m); !bytes.Equal(got, learner) {
		t.Fatalf("a learner encodes as %v, want %v", got, learner)
	}
	if m, err := DecodeMember(learner); err != nil || !m.IsLearner {
		t.Fatalf("learner record: %+v, %v", m, err)
	}
	learner[2] = 3
	if _, err := DecodeMember(learner); err == nil {
		t.Fatal("unknown flag bits decoded")
	}
}

func FuzzMemberCodec(f *testing.F) {
	f.Add(AppendMember(nil, &Member{ID: 7, Name: "n", PeerURLs: []string{"http://x:1"}, ClientURLs: []string{"http://x:2"}}))
	f.Add(AppendMember(nil, &Member{ID: 8, PeerURLs: []string{"http://x:3"}, IsLearner: true}))
	f.Add([]byte{1, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMember(b)
		if err != nil {
			return
		}
		again, err := DecodeMember(AppendMember(nil, &m))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encode of %+v: %+v, %v", m, again, err)
		}
	})
}
