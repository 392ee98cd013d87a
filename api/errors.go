package api

import (
	"bytes"
	"net/http"
	"strconv"
)

// Error codes of the v2 API (etcd's v2error package).
const (
	EcodeKeyNotFound        = 100
	EcodeTestFailed         = 101
	EcodeNotFile            = 102
	EcodeNotDir             = 104
	EcodeNodeExist          = 105
	EcodeRootROnly          = 107
	EcodeDirNotEmpty        = 108
	EcodeUnauthorized       = 110
	EcodePrevValueRequired  = 201
	EcodeTTLNaN             = 202
	EcodeIndexNaN           = 203
	EcodeInvalidField       = 209
	EcodeInvalidForm        = 210
	EcodeRefreshValue       = 211
	EcodeRefreshTTLRequired = 212
	EcodeRaftInternal       = 300
	EcodeLeaderElect        = 301
	EcodeWatcherCleared     = 400
	EcodeEventIndexCleared  = 401
)

var messages = map[int]string{
	100: "Key not found",
	101: "Compare failed",
	102: "Not a file",
	103: "Reached the max number of peers in the cluster",
	104: "Not a directory",
	105: "Key already exists",
	106: "The prefix of given key is a keyword in etcd",
	107: "Root is read only",
	108: "Directory not empty",
	109: "Peer address has existed",
	110: "The request requires user authentication",
	200: "Value is Required in POST form",
	201: "PrevValue is Required in POST form",
	202: "The given TTL in POST form is not a number",
	203: "The given index in POST form is not a number",
	204: "Value or TTL is required in POST form",
	205: "The given timeout in POST form is not a number",
	206: "Name is required in POST form",
	207: "Index or value is required",
	208: "Index and value cannot both be specified",
	209: "Invalid field",
	210: "Invalid POST form",
	211: "Value provided on refresh",
	212: "A TTL must be provided on refresh",
	300: "Raft Internal Error",
	301: "During Leader Election",
	400: "watcher is cleared due to etcd recovery",
	401: "The event in requested index is outdated and cleared",
	402: "Standby Internal Error",
	403: "Invalid active size",
	404: "Standby remove delay",
	500: "Client Internal Error",
}

// Error is a v2 API error: {"errorCode","message","cause","index"}.
type Error struct {
	Code    int    `json:"errorCode"`
	Message string `json:"message"`
	Cause   string `json:"cause,omitempty"`
	Index   uint64 `json:"index"`
	// Status overrides the table's HTTP status when non-zero (413 for an
	// oversized body [D-10]). Not on the wire.
	Status int `json:"-"`
}

// NewError builds an error with the standard message for code.
func NewError(code int, cause string, index uint64) *Error {
	return &Error{Code: code, Message: messages[code], Cause: cause, Index: index}
}

func (e *Error) Error() string {
	if e.Cause == "" {
		return e.Message
	}
	return e.Message + " (" + e.Cause + ")"
}

// StatusCode is the one code→HTTP status table of the v2 API.
func (e *Error) StatusCode() int {
	if e.Status != 0 {
		return e.Status
	}
	switch e.Code {
	case EcodeKeyNotFound:
		return http.StatusNotFound
	case EcodeNotFile, EcodeDirNotEmpty:
		return http.StatusForbidden
	case EcodeTestFailed, EcodeNodeExist:
		return http.StatusPreconditionFailed
	case EcodeUnauthorized:
		return http.StatusUnauthorized
	case EcodeRaftInternal, EcodeLeaderElect:
		return http.StatusInternalServerError
	default:
		return http.StatusBadRequest
	}
}

// AppendJSON appends the error body and its trailing newline.
func (e *Error) AppendJSON(b *bytes.Buffer) {
	b.WriteString(`{"errorCode":`)
	b.WriteString(strconv.Itoa(e.Code))
	b.WriteString(`,"message":`)
	writeString(b, e.Message)
	if e.Cause != "" {
		b.WriteString(`,"cause":`)
		writeString(b, e.Cause)
	}
	b.WriteString(`,"index":`)
	b.WriteString(strconv.FormatUint(e.Index, 10))
	b.WriteString("}\n")
}
