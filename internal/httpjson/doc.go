// Package httpjson is the core shared by ov's HTTP API clients (the agent's, a shim's and the
// controller's): it sends a request with a JSON (or raw) body, turns an answer other than 2xx into an
// error of the errdefs class the server named, and decodes a JSON answer. It knows no API's paths;
// each client keeps its own methods, messages and headers and lends them through Client's fields.
//
// Invariants: every error for a request that got no answer comes from Unreachable; every answer
// other than 2xx comes back as DecodeError's error with its body closed; a 204 answer decodes into
// nothing.
package httpjson
