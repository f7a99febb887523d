// Package goid stands in for github.com/choleraehyq/pid, whose assembly
// (reading the runtime's g and p structures) no release builds with Go 1.26.
// Kitex v0.5.2 uses only GetPid, to pick one shard of its connection-pool
// ring; with one shard (GOMAXPROCS < 5) it never calls it. Any value is
// correct, only the spread across shards differs.
package goid

// GetPid returns 0: the first shard, from which Kitex moves on to the next
// when it is full.
func GetPid() int { return 0 }
