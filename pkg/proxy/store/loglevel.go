package store

import (
	"context"
	"time"
)

// ClusterLogLevel is a log level set for every gateway node sharing a
// database (Kong's PUT /debug/cluster/log-level): each node that sees it
// applies it until Until.
type ClusterLogLevel struct {
	// Level is one of Kong's level names (debug … emerg).
	Level string
	// Until is when the nodes go back to their own levels; zero keeps the
	// level until the next change.
	Until time.Time
	// Serial grows with every change; 0: never set.
	Serial int64
}

// ClusterLogLevelStore keeps the cluster's log level. The SQL stores
// implement it; a DB-less node has no cluster to tell.
type ClusterLogLevelStore interface {
	// SetClusterLogLevel records a new level and returns it with its
	// serial.
	SetClusterLogLevel(ctx context.Context, level string, until time.Time) (ClusterLogLevel, error)
	// ClusterLogLevel returns the last level set (Serial 0: none).
	ClusterLogLevel(ctx context.Context) (ClusterLogLevel, error)
}
