package httpapi

import (
	_ "embed"
	"net/http"
	"strconv"
)

// uiWatchPath serves a small page that watches a key over Server-Sent
// Events with the browser's EventSource (and resumes through Last-Event-ID
// after a dropped connection). It is not part of etcd's API.
const uiWatchPath = "/ui/watch.html"

//go:embed ui/watch.html
var uiWatchHTML []byte

var (
	hvHTML          = []string{"text/html; charset=utf-8"}
	hvUILength      = []string{strconv.Itoa(len(uiWatchHTML))}
	hvUICacheHeader = []string{"no-cache"}
)

func (rt *router) serveUIWatch(w http.ResponseWriter, r *http.Request) {
	setRoute(w, routeUI)
	if !requireMethod(w, r, "GET,HEAD", http.MethodGet, http.MethodHead) {
		return
	}
	h := w.Header()
	h[hContentType] = hvHTML
	h[hContentLength] = hvUILength
	h["Cache-Control"] = hvUICacheHeader
	h[hNosniff] = hvNosniff
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(uiWatchHTML)
	}
}
