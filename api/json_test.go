package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

// writeString must produce exactly encoding/json's output, whether it takes
// the plain path or not.
func checkWriteString(t *testing.T, s string) {
	t.Helper()
	var b bytes.Buffer
	writeString(&b, s)
	want, _ := json.Marshal(s)
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("writeString(%q) = %s, encoding/json gives %s", s, b.Bytes(), want)
	}
}

func TestWriteStringEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		checkWriteString(t, "a"+string([]byte{byte(c)})+"z")
	}
	for _, s := range []string{"", "plain value", `"quoted"`, `back\slash`, "<b>&amp;</b>", "tab\there", "del\x7f", "é", "\u2028\u2029", "\xff\xfe"} {
		checkWriteString(t, s)
	}
}

func FuzzWriteString(f *testing.F) {
	for _, s := range []string{"", "v", "<>&", "\x00\x1f\x7f\x80", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(checkWriteString)
}
