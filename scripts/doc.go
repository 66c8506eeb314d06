// Package scripts holds the tests of the shell scripts beside it: they run
// scripts/run-demo.sh, as `make run` does, and the programs it starts.
package scripts
