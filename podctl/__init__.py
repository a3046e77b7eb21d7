"""podctl: the Kubernetes model (pods, replicas, services, probes, rollouts) on one Docker host."""

__version__ = "0.1.0"
