package httpapi

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"cairn/api"
	"cairn/storage"
)

// TestValidation covers every parse and validation rule of spec §3.2–§3.4
// and §7.1, including the order in which they are checked: each case that
// combines two faults expects the earlier step's error.
func TestValidation(t *testing.T) {
	const (
		c201 = api.EcodePrevValueRequired
		c202 = api.EcodeTTLNaN
		c203 = api.EcodeIndexNaN
		c209 = api.EcodeInvalidField
		c210 = api.EcodeInvalidForm
		c211 = api.EcodeRefreshValue
		c212 = api.EcodeRefreshTTLRequired
	)
	cases := []struct {
		name  string
		q     req
		code  int
		cause string
	}{
		// Step 2: form syntax (query and body).
		{"bad escape in query", req{method: "GET", target: "/v2/keys/x?a=%zz"}, c210, `invalid URL escape "%zz"`},
		{"bad escape in key name", req{method: "GET", target: "/v2/keys/x?%zz=1"}, c210, `invalid URL escape "%zz"`},
		{"semicolon in query", req{method: "GET", target: "/v2/keys/x?a=1;b=2"}, c210, "invalid semicolon separator in query"},
		{"bad escape in form body", req{method: "PUT", target: "/v2/keys/x", body: "value=%zz", ctype: "form"}, c210, `invalid URL escape "%zz"`},
		{"body error before query error", req{method: "PUT", target: "/v2/keys/x?a=%yy", body: "value=%zz", ctype: "form"}, c210, `invalid URL escape "%zz"`},
		{"form error before prevIndex", req{method: "GET", target: "/v2/keys/x?prevIndex=x&a=%zz"}, c210, `invalid URL escape "%zz"`},
		{"bad media type parameter", req{method: "PUT", target: "/v2/keys/x", body: "value=1", ctype: formType + "; charset"}, c210, "mime: invalid media parameter"},
		{"POST bad escape", req{method: "POST", target: "/v2/keys/q", body: "value=%", ctype: "form"}, c210, `invalid URL escape "%"`},
		// Step 3–4: indexes.
		{"prevIndex letters", req{method: "GET", target: "/v2/keys/x?prevIndex=abc"}, c203, `invalid value for "prevIndex"`},
		{"prevIndex negative", req{method: "PUT", target: "/v2/keys/x?prevIndex=-1"}, c203, `invalid value for "prevIndex"`},
		{"prevIndex plus sign", req{method: "PUT", target: "/v2/keys/x?prevIndex=%2B5"}, c203, `invalid value for "prevIndex"`},
		{"prevIndex empty", req{method: "DELETE", target: "/v2/keys/x?prevIndex="}, c203, `invalid value for "prevIndex"`},
		{"prevIndex space", req{method: "GET", target: "/v2/keys/x?prevIndex=%201"}, c203, `invalid value for "prevIndex"`},
		{"prevIndex overflow", req{method: "GET", target: "/v2/keys/x?prevIndex=18446744073709551616"}, c203, `invalid value for "prevIndex"`},
		{"prevIndex underscore", req{method: "GET", target: "/v2/keys/x?prevIndex=1_000"}, c203, `invalid value for "prevIndex"`},
		{"prevIndex hex", req{method: "GET", target: "/v2/keys/x?prevIndex=0x10"}, c203, `invalid value for "prevIndex"`},
		{"waitIndex letters", req{method: "GET", target: "/v2/keys/x?waitIndex=x"}, c203, `invalid value for "waitIndex"`},
		{"prevIndex before waitIndex", req{method: "GET", target: "/v2/keys/x?waitIndex=x&prevIndex=y"}, c203, `invalid value for "prevIndex"`},
		{"waitIndex before booleans", req{method: "GET", target: "/v2/keys/x?recursive=x&waitIndex=y"}, c203, `invalid value for "waitIndex"`},
		{"prevIndex in body", req{method: "PUT", target: "/v2/keys/x", body: "prevIndex=z", ctype: "form"}, c203, `invalid value for "prevIndex"`},
		// Step 5: booleans in order.
		{"bare recursive", req{method: "GET", target: "/v2/keys/x?recursive"}, c209, `invalid value for "recursive"`},
		{"empty recursive", req{method: "GET", target: "/v2/keys/x?recursive="}, c209, `invalid value for "recursive"`},
		{"recursive yes", req{method: "GET", target: "/v2/keys/x?recursive=yes"}, c209, `invalid value for "recursive"`},
		{"sorted 2", req{method: "GET", target: "/v2/keys/x?sorted=2"}, c209, `invalid value for "sorted"`},
		{"wait maybe", req{method: "GET", target: "/v2/keys/x?wait=maybe"}, c209, `invalid value for "wait"`},
		{"dir tRUE", req{method: "PUT", target: "/v2/keys/x?dir=tRUE"}, c209, `invalid value for "dir"`},
		{"quorum on", req{method: "GET", target: "/v2/keys/x?quorum=on"}, c209, `invalid value for "quorum"`},
		{"stream x", req{method: "GET", target: "/v2/keys/x?stream=x"}, c209, `invalid value for "stream"`},
		{"recursive before sorted", req{method: "GET", target: "/v2/keys/x?sorted=x&recursive=x"}, c209, `invalid value for "recursive"`},
		{"sorted before wait", req{method: "GET", target: "/v2/keys/x?wait=x&sorted=x"}, c209, `invalid value for "sorted"`},
		{"wait before dir", req{method: "GET", target: "/v2/keys/x?dir=x&wait=x"}, c209, `invalid value for "wait"`},
		{"dir before quorum", req{method: "GET", target: "/v2/keys/x?quorum=x&dir=x"}, c209, `invalid value for "dir"`},
		{"quorum before stream", req{method: "GET", target: "/v2/keys/x?stream=x&quorum=x"}, c209, `invalid value for "quorum"`},
		{"booleans validated on DELETE", req{method: "DELETE", target: "/v2/keys/x?sorted=x"}, c209, `invalid value for "sorted"`},
		// Step 6: wait on a non-GET.
		{"wait on PUT", req{method: "PUT", target: "/v2/keys/x?wait=true"}, c209, `"wait" can only be used with GET requests`},
		{"wait on POST", req{method: "POST", target: "/v2/keys/x?wait=1"}, c209, `"wait" can only be used with GET requests`},
		{"wait on DELETE", req{method: "DELETE", target: "/v2/keys/x?wait=T"}, c209, `"wait" can only be used with GET requests`},
		{"wait on HEAD", req{method: "HEAD", target: "/v2/keys/x?wait=true"}, c209, `"wait" can only be used with GET requests`},
		{"stream before wait-on-PUT", req{method: "PUT", target: "/v2/keys/x?wait=true&stream=x"}, c209, `invalid value for "stream"`},
		{"wait-on-PUT before empty prevValue", req{method: "PUT", target: "/v2/keys/x?wait=true&prevValue="}, c209, `"wait" can only be used with GET requests`},
		// Step 7: empty prevValue.
		{"empty prevValue", req{method: "PUT", target: "/v2/keys/x?prevValue=&value=1"}, c201, `"prevValue" cannot be empty`},
		{"empty prevValue on GET", req{method: "GET", target: "/v2/keys/x?prevValue="}, c201, `"prevValue" cannot be empty`},
		{"empty prevValue on DELETE", req{method: "DELETE", target: "/v2/keys/x?prevValue"}, c201, `"prevValue" cannot be empty`},
		{"first prevValue empty", req{method: "PUT", target: "/v2/keys/x?prevValue=&prevValue=a"}, c201, `"prevValue" cannot be empty`},
		{"empty prevValue before noValueOnSuccess", req{method: "PUT", target: "/v2/keys/x?noValueOnSuccess=x&prevValue="}, c201, `"prevValue" cannot be empty`},
		// Step 8: noValueOnSuccess.
		{"noValueOnSuccess bad", req{method: "PUT", target: "/v2/keys/x?noValueOnSuccess=x"}, c209, `invalid value for "noValueOnSuccess"`},
		{"noValueOnSuccess before ttl", req{method: "PUT", target: "/v2/keys/x?ttl=x&noValueOnSuccess=x"}, c209, `invalid value for "noValueOnSuccess"`},
		// Step 9: ttl.
		{"ttl letters", req{method: "PUT", target: "/v2/keys/x?ttl=abc"}, c202, `invalid value for "ttl"`},
		{"ttl on GET", req{method: "GET", target: "/v2/keys/x?ttl=abc"}, c202, `invalid value for "ttl"`},
		{"ttl negative", req{method: "PUT", target: "/v2/keys/x?ttl=-1"}, c202, `invalid value for "ttl"`},
		{"ttl fraction", req{method: "PUT", target: "/v2/keys/x?ttl=1.5"}, c202, `invalid value for "ttl"`},
		{"ttl above int64 nanos [D-6]", req{method: "PUT", target: "/v2/keys/x?ttl=9223372037"}, c202, `invalid value for "ttl"`},
		{"ttl 9999999999 [D-6]", req{method: "PUT", target: "/v2/keys/x?ttl=9999999999"}, c202, `invalid value for "ttl"`},
		{"ttl max uint64 [D-6]", req{method: "PUT", target: "/v2/keys/x?ttl=18446744073709551615"}, c202, `invalid value for "ttl"`},
		{"ttl above uint64", req{method: "PUT", target: "/v2/keys/x?ttl=18446744073709551616"}, c202, `invalid value for "ttl"`},
		{"ttl before prevExist", req{method: "PUT", target: "/v2/keys/x?prevExist=x&ttl=x"}, c202, `invalid value for "ttl"`},
		// Step 10: prevExist.
		{"prevExist bad", req{method: "PUT", target: "/v2/keys/x?prevExist=maybe"}, c209, "invalid value for prevExist"},
		{"prevExist empty", req{method: "PUT", target: "/v2/keys/x?prevExist="}, c209, "invalid value for prevExist"},
		{"bare prevExist", req{method: "GET", target: "/v2/keys/x?prevExist"}, c209, "invalid value for prevExist"},
		{"prevExist before refresh", req{method: "PUT", target: "/v2/keys/x?refresh=x&prevExist=x"}, c209, "invalid value for prevExist"},
		// Step 11: refresh.
		{"refresh bad", req{method: "PUT", target: "/v2/keys/x?refresh=x"}, c209, "invalid value for refresh"},
		{"refresh empty", req{method: "PUT", target: "/v2/keys/x?refresh="}, c209, "invalid value for refresh"},
		{"refresh with value", req{method: "PUT", target: "/v2/keys/x?refresh=true&ttl=5", body: "value=new", ctype: "form"}, c211, "A value was provided on a refresh"},
		{"refresh with value before missing ttl", req{method: "PUT", target: "/v2/keys/x?refresh=true&value=v"}, c211, "A value was provided on a refresh"},
		{"refresh without ttl", req{method: "PUT", target: "/v2/keys/x?refresh=true&prevExist=true"}, c212, "No TTL value set"},
		{"refresh with empty ttl", req{method: "PUT", target: "/v2/keys/x?refresh=true&ttl="}, c212, "No TTL value set"},
		{"refresh first ttl empty", req{method: "PUT", target: "/v2/keys/x?refresh=true&ttl=&ttl=5"}, c212, "No TTL value set"},
		{"refresh checked on GET", req{method: "GET", target: "/v2/keys/x?refresh=1"}, c212, "No TTL value set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			w := e.do(t, tc.q)
			want := errBody(tc.code, tc.cause, 0)
			if got := w.Body.String(); tc.q.method != "HEAD" && got != want {
				t.Fatalf("body = %q, want %q", got, want)
			}
			if wantStatus := api.NewError(tc.code, "", 0).StatusCode(); w.Code != wantStatus {
				t.Errorf("status = %d, want %d", w.Code, wantStatus)
			}
			h := w.Header()
			wantHeader(t, h, "Content-Type", "application/json")
			wantHeader(t, h, "X-Etcd-Index", "0")
			wantHeader(t, h, "X-Etcd-Cluster-Id", "156c5310fedaaf52")
			wantHeader(t, h, "X-Raft-Index", "")
			wantHeader(t, h, "X-Raft-Term", "")
			wantHeader(t, h, "Content-Length", strconv.Itoa(len(want)))
			if n := len(e.raft.proposed()); n != 0 {
				t.Errorf("%d commands proposed on a rejected request", n)
			}
			if len(e.store.gets) != 0 || len(e.store.counted) != 0 {
				t.Errorf("store read on a rejected request")
			}
		})
	}
}

// TestAccepted checks inputs that look odd but are valid (spec §3.2).
func TestAccepted(t *testing.T) {
	cases := []struct {
		name string
		q    req
	}{
		{"all true spellings", req{method: "GET", target: "/v2/keys/x?recursive=1&sorted=t&dir=T&quorum=TRUE&stream=true"}},
		{"all false spellings", req{method: "GET", target: "/v2/keys/x?recursive=0&sorted=f&wait=F&dir=FALSE&quorum=false&stream=False"}},
		{"only the first value counts", req{method: "GET", target: "/v2/keys/x?recursive=true&recursive=bogus"}},
		{"empty ttl is no ttl", req{method: "PUT", target: "/v2/keys/x?ttl="}},
		{"ttl first empty value", req{method: "PUT", target: "/v2/keys/x?ttl=&ttl=bogus"}},
		{"max ttl [D-6]", req{method: "PUT", target: "/v2/keys/x?ttl=9223372036"}},
		{"prevIndex 0", req{method: "PUT", target: "/v2/keys/x?prevIndex=0"}},
		{"prevIndex max", req{method: "DELETE", target: "/v2/keys/x?prevIndex=18446744073709551615"}},
		{"refresh with empty value", req{method: "PUT", target: "/v2/keys/x?refresh=true&ttl=5&value="}},
		{"refresh false with value", req{method: "PUT", target: "/v2/keys/x?refresh=false&value=x"}},
		{"unknown parameters ignored", req{method: "PUT", target: "/v2/keys/x?foo=%41&bar"}},
		{"GET form body ignored", req{method: "GET", target: "/v2/keys/x", body: "ttl=abc", ctype: "form"}},
		{"DELETE form body ignored", req{method: "DELETE", target: "/v2/keys/x", body: "prevIndex=abc", ctype: "form"}},
		{"JSON body ignored", req{method: "PUT", target: "/v2/keys/x", body: `{"value":"%zz"}`, ctype: "application/json"}},
		{"multipart ignored", req{method: "PUT", target: "/v2/keys/x", body: "--b\r\n", ctype: "multipart/form-data; boundary=b"}},
		{"form charset parameter", req{method: "PUT", target: "/v2/keys/x", body: "value=1", ctype: formType + "; charset=utf-8"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			w := e.do(t, tc.q)
			if w.Code >= 300 {
				t.Fatalf("status %d, body %q", w.Code, w.Body)
			}
		})
	}
}

// TestDispatch checks the command each write proposes (spec §4.2–§4.4,
// §6.1, §6.4) and the key normalisation of §3.1 [D-2].
func TestDispatch(t *testing.T) {
	now := fixedNow.UnixNano()
	sec := int64(time.Second)
	cases := []struct {
		name string
		q    req
		want storage.Cmd
	}{
		{"set", req{method: "PUT", target: "/v2/keys/message", body: "value=Hello", ctype: "form"},
			storage.Cmd{Op: storage.OpSet, Path: "/message", Value: "Hello"}},
		{"set from query", req{method: "PUT", target: "/v2/keys/message?value=q"},
			storage.Cmd{Op: storage.OpSet, Path: "/message", Value: "q"}},
		{"body value wins over query", req{method: "PUT", target: "/v2/keys/m?value=q2", body: "value=body", ctype: "form"},
			storage.Cmd{Op: storage.OpSet, Path: "/m", Value: "body"}},
		{"first repeat wins", req{method: "PUT", target: "/v2/keys/m?value=a&value=b"},
			storage.Cmd{Op: storage.OpSet, Path: "/m", Value: "a"}},
		{"JSON body stores empty value", req{method: "PUT", target: "/v2/keys/m", body: `{"value":"x"}`, ctype: "application/json"},
			storage.Cmd{Op: storage.OpSet, Path: "/m"}},
		{"text body ignored", req{method: "PUT", target: "/v2/keys/m", body: "value=x", ctype: "text/plain"},
			storage.Cmd{Op: storage.OpSet, Path: "/m"}},
		{"missing content type ignored", req{method: "PUT", target: "/v2/keys/m", body: "value=x"},
			storage.Cmd{Op: storage.OpSet, Path: "/m"}},
		{"set dir drops value", req{method: "PUT", target: "/v2/keys/dir?dir=true&value=x"},
			storage.Cmd{Op: storage.OpSet, Path: "/dir", Dir: true}},
		{"set with ttl", req{method: "PUT", target: "/v2/keys/tmp?value=soon&ttl=2"},
			storage.Cmd{Op: storage.OpSet, Path: "/tmp", Value: "soon", Expiration: now + 2*sec}},
		{"ttl 0 expires now", req{method: "PUT", target: "/v2/keys/tmp?value=v&ttl=0"},
			storage.Cmd{Op: storage.OpSet, Path: "/tmp", Value: "v", Expiration: now}},
		{"empty ttl is permanent", req{method: "PUT", target: "/v2/keys/tmp?value=v&ttl="},
			storage.Cmd{Op: storage.OpSet, Path: "/tmp", Value: "v"}},
		{"max ttl saturates", req{method: "PUT", target: "/v2/keys/tmp?ttl=9223372036"},
			storage.Cmd{Op: storage.OpSet, Path: "/tmp", Expiration: 1<<63 - 1}},
		{"prevIndex 0 is no condition", req{method: "PUT", target: "/v2/keys/m?value=v&prevIndex=0"},
			storage.Cmd{Op: storage.OpSet, Path: "/m", Value: "v"}},
		{"cas on value", req{method: "PUT", target: "/v2/keys/m?value=Bye&prevValue=Hi"},
			storage.Cmd{Op: storage.OpCAS, Path: "/m", Value: "Bye", PrevValue: "Hi"}},
		{"cas on index", req{method: "PUT", target: "/v2/keys/m?value=Bye&prevIndex=7"},
			storage.Cmd{Op: storage.OpCAS, Path: "/m", Value: "Bye", PrevIndex: 7}},
		{"cas both, dir ignored", req{method: "PUT", target: "/v2/keys/m?value=A&prevValue=Nope&prevIndex=1&dir=true&ttl=3"},
			storage.Cmd{Op: storage.OpCAS, Path: "/m", Value: "A", PrevValue: "Nope", PrevIndex: 1, Expiration: now + 3*sec}},
		{"update", req{method: "PUT", target: "/v2/keys/m?value=Hi&prevExist=true"},
			storage.Cmd{Op: storage.OpUpdate, Path: "/m", Value: "Hi"}},
		{"update dir ttl [D-1]", req{method: "PUT", target: "/v2/keys/tdir?dir=true&prevExist=true&ttl=60"},
			storage.Cmd{Op: storage.OpUpdate, Path: "/tdir", Dir: true, Expiration: now + 60*sec}},
		{"prevExist true with prevValue is cas", req{method: "PUT", target: "/v2/keys/m?value=v&prevExist=1&prevValue=o"},
			storage.Cmd{Op: storage.OpCAS, Path: "/m", Value: "v", PrevValue: "o"}},
		{"prevExist true with prevIndex is cas", req{method: "PUT", target: "/v2/keys/m?value=v&prevExist=t&prevIndex=9"},
			storage.Cmd{Op: storage.OpCAS, Path: "/m", Value: "v", PrevIndex: 9}},
		{"create ignores conditions", req{method: "PUT", target: "/v2/keys/m?value=v&prevExist=false&prevValue=o&prevIndex=3"},
			storage.Cmd{Op: storage.OpCreate, Path: "/m", Value: "v"}},
		{"create dir with ttl", req{method: "PUT", target: "/v2/keys/d?prevExist=false&dir=true&ttl=30"},
			storage.Cmd{Op: storage.OpCreate, Path: "/d", Dir: true, Expiration: now + 30*sec}},
		{"refresh alone is set-style", req{method: "PUT", target: "/v2/keys/s?refresh=true&ttl=60"},
			storage.Cmd{Op: storage.OpSet, Path: "/s", Refresh: true, Expiration: now + 60*sec}},
		{"refresh with prevExist true", req{method: "PUT", target: "/v2/keys/s?ttl=60&refresh=true&prevExist=true"},
			storage.Cmd{Op: storage.OpUpdate, Path: "/s", Refresh: true, Expiration: now + 60*sec}},
		{"refresh with prevValue", req{method: "PUT", target: "/v2/keys/s?ttl=60&refresh=true&prevValue=s"},
			storage.Cmd{Op: storage.OpCAS, Path: "/s", PrevValue: "s", Refresh: true, Expiration: now + 60*sec}},
		{"refresh with prevExist false has no effect", req{method: "PUT", target: "/v2/keys/s?ttl=60&refresh=true&prevExist=false"},
			storage.Cmd{Op: storage.OpCreate, Path: "/s", Expiration: now + 60*sec}},
		{"refresh false", req{method: "PUT", target: "/v2/keys/s?value=v&refresh=false"},
			storage.Cmd{Op: storage.OpSet, Path: "/s", Value: "v"}},
		{"post", req{method: "POST", target: "/v2/keys/queue", body: "value=job1", ctype: "form"},
			storage.Cmd{Op: storage.OpCreateInOrder, Path: "/queue", Value: "job1"}},
		{"post ignores prev conditions and refresh", req{method: "POST", target: "/v2/keys/queue?value=j&prevExist=true&prevValue=x&prevIndex=3&refresh=false&ttl=5"},
			storage.Cmd{Op: storage.OpCreateInOrder, Path: "/queue", Value: "j", Expiration: now + 5*sec}},
		{"post dir", req{method: "POST", target: "/v2/keys/queue?dir=true&value=x"},
			storage.Cmd{Op: storage.OpCreateInOrder, Path: "/queue", Dir: true}},
		{"post on root", req{method: "POST", target: "/v2/keys/?value=x"},
			storage.Cmd{Op: storage.OpCreateInOrder, Path: "/", Value: "x"}},
		{"delete", req{method: "DELETE", target: "/v2/keys/m"},
			storage.Cmd{Op: storage.OpDelete, Path: "/m"}},
		{"delete dir", req{method: "DELETE", target: "/v2/keys/d?dir=true"},
			storage.Cmd{Op: storage.OpDelete, Path: "/d", Dir: true}},
		{"delete recursive", req{method: "DELETE", target: "/v2/keys/d?recursive=true"},
			storage.Cmd{Op: storage.OpDelete, Path: "/d", Recursive: true}},
		{"delete ignores value and ttl", req{method: "DELETE", target: "/v2/keys/d?value=x&ttl=5"},
			storage.Cmd{Op: storage.OpDelete, Path: "/d"}},
		{"cad on value", req{method: "DELETE", target: "/v2/keys/lock?prevValue=owner2"},
			storage.Cmd{Op: storage.OpCAD, Path: "/lock", PrevValue: "owner2"}},
		{"cad on index ignores dir and recursive", req{method: "DELETE", target: "/v2/keys/lock?prevIndex=10&dir=true&recursive=true"},
			storage.Cmd{Op: storage.OpCAD, Path: "/lock", PrevIndex: 10}},
		{"delete body ignored", req{method: "DELETE", target: "/v2/keys/lock", body: "prevValue=x", ctype: "form"},
			storage.Cmd{Op: storage.OpDelete, Path: "/lock"}},
		// Keys (§3.1) [D-2].
		{"escaped key", req{method: "PUT", target: "/v2/keys/a%20b%3Fc?value=1"},
			storage.Cmd{Op: storage.OpSet, Path: "/a b?c", Value: "1"}},
		{"utf-8 key", req{method: "PUT", target: "/v2/keys/%E2%9C%93"},
			storage.Cmd{Op: storage.OpSet, Path: "/✓"}},
		{"trailing slash", req{method: "PUT", target: "/v2/keys/message/"},
			storage.Cmd{Op: storage.OpSet, Path: "/message"}},
		{"encoded trailing slash", req{method: "PUT", target: "/v2/keys/message%2F"},
			storage.Cmd{Op: storage.OpSet, Path: "/message"}},
		{"encoded slash separates", req{method: "PUT", target: "/v2/keys/a%2Fb"},
			storage.Cmd{Op: storage.OpSet, Path: "/a/b"}},
		{"root without slash", req{method: "PUT", target: "/v2/keys?value=x"},
			storage.Cmd{Op: storage.OpSet, Path: "/", Value: "x"}},
		{"encoded dotdot clamped [D-2]", req{method: "PUT", target: "/v2/keys/%2E%2E/0"},
			storage.Cmd{Op: storage.OpSet, Path: "/0"}},
		{"dotdot encoded slash clamped [D-2]", req{method: "PUT", target: "/v2/keys/..%2F..%2Fzzz"},
			storage.Cmd{Op: storage.OpSet, Path: "/zzz"}},
		{"lower-case encoded dots [D-2]", req{method: "DELETE", target: "/v2/keys/a/%2e%2e/%2e%2e/%2e%2e/b"},
			storage.Cmd{Op: storage.OpDelete, Path: "/b"}},
		{"encoded dot segment", req{method: "PUT", target: "/v2/keys/a/%2E/b"},
			storage.Cmd{Op: storage.OpSet, Path: "/a/b"}},
		{"encoded double slash", req{method: "PUT", target: "/v2/keys/a%2F%2Fb"},
			storage.Cmd{Op: storage.OpSet, Path: "/a/b"}},
		{"hidden key", req{method: "PUT", target: "/v2/keys/app/_internal?value=s"},
			storage.Cmd{Op: storage.OpSet, Path: "/app/_internal", Value: "s"}},
		{"dot-leading name is a name", req{method: "PUT", target: "/v2/keys/.hidden/..x"},
			storage.Cmd{Op: storage.OpSet, Path: "/.hidden/..x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			w := e.do(t, tc.q)
			if w.Code >= 300 {
				t.Fatalf("status %d, body %q", w.Code, w.Body)
			}
			cmds := e.raft.proposed()
			if len(cmds) != 1 {
				t.Fatalf("%d commands proposed, want 1", len(cmds))
			}
			want := tc.want
			want.Now = fixedNow.UnixNano() // every write carries its arrival time
			if cmds[0] != want {
				t.Errorf("cmd = %+v\nwant  %+v", cmds[0], want)
			}
		})
	}
}

// TestGetKeyPath checks the key and flags handed to the store.
func TestGetKeyPath(t *testing.T) {
	cases := []struct {
		target string
		want   getCall
	}{
		{"/v2/keys", getCall{"/", false, false}},
		{"/v2/keys/", getCall{"/", false, false}},
		{"/v2/keys/dir?recursive=true&sorted=true", getCall{"/dir", true, true}},
		{"/v2/keys/%2E%2E", getCall{"/", false, false}},
		{"/v2/keys/%2E%2E/%2E%2E/1/members", getCall{"/1/members", false, false}},
		{"/v2/keys/message%2F?sorted=1", getCall{"/message", false, true}},
	}
	for _, tc := range cases {
		t.Run(tc.target, func(t *testing.T) {
			e := newEnv(t, nil)
			w := e.do(t, req{method: "GET", target: tc.target})
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			if len(e.store.gets) != 1 || e.store.gets[0] != tc.want {
				t.Errorf("gets = %+v, want %+v", e.store.gets, tc.want)
			}
		})
	}
}

func TestKeyPath(t *testing.T) {
	cases := map[string]string{
		"":              "/",
		"/":             "/",
		"//":            "/",
		"/a/":           "/a",
		"a":             "/a",
		"/a//b":         "/a/b",
		"/a/./b":        "/a/b",
		"/a/../b":       "/b",
		"/../../x":      "/x",
		"/..":           "/",
		"/a/b/../../..": "/",
		"/_x/y":         "/_x/y",
		"/a b?c":        "/a b?c",
	}
	for in, want := range cases {
		if got := keyPath(in); got != want {
			t.Errorf("keyPath(%q) = %q, want %q", in, got, want)
		}
	}
}
