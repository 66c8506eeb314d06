// Package archtest holds the architecture test: the dependency rules of
// docs/architecture.md, checked against `go list -deps` so that a
// forbidden import fails `make test` instead of waiting for a review.
package archtest
