"""Default values, in one place. Probe defaults follow Kubernetes."""

from __future__ import annotations

# Probes (Kubernetes: initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1,
# successThreshold 1, failureThreshold 3).
PROBE_INITIAL_DELAY_S = 0.0
PROBE_PERIOD_S = 10.0
PROBE_TIMEOUT_S = 1.0
PROBE_SUCCESS_THRESHOLD = 1
PROBE_FAILURE_THRESHOLD = 3

STOP_GRACE_S = 10.0
REPLICAS = 1

# Restart backoff (CrashLoopBackOff): first retry after 1 s, doubling, capped at
# 5 min, forgotten once a container has run for 10 min (the kubelet's reset rule).
BACKOFF_INITIAL_S = 1.0
BACKOFF_CAP_S = 300.0
BACKOFF_RESET_AFTER_S = 600.0

# Image pull retries back off the same way, on their own clock.
PULL_BACKOFF_INITIAL_S = 2.0
PULL_BACKOFF_CAP_S = 300.0

# Controller: a resync covers missed events.
RESYNC_INTERVAL_S = 30.0
EVENT_RESUBSCRIBE_DELAY_S = 1.0

# Engine calls: every call has a timeout; a hung engine never hangs podctl.
ENGINE_CALL_TIMEOUT_S = 30.0
ENGINE_PULL_TIMEOUT_S = 300.0
ENGINE_BUILD_TIMEOUT_S = 600.0
ENGINE_PING_TIMEOUT_S = 5.0
# How many engine calls apply() runs at once (the Debian 20.10 engine has
# deadlocked under large bursts of concurrent teardown).
ENGINE_CONCURRENCY = 8

# Least privilege for every container.
PIDS_LIMIT = 1024

PROXY_BIND = "127.0.0.1"
PROXY_CONNECT_TIMEOUT_S = 3.0
PROXY_IDLE_TIMEOUT_S = 300.0
PROXY_MAX_CONNECTIONS = 10_000
