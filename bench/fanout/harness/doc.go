// Package harness is the shared machinery of the broadcast benchmarks
// (bench/fanout and bench/sync): it starts loalangd as a separate process on
// loopback ports, talks to its HTTP API, simulates the provisioned speakers
// with firmware-sim/speaker, listens on the audio topics with bare paho
// probes, and reads a child process's CPU time and memory from /proc.
//
// Every child process it starts is killed by pid on Close, and dies with its
// parent (PR_SET_PDEATHSIG) if the benchmark itself is killed.
package harness
