"""Health probes (http, tcp, exec), prober tasks and the HealthStore the planner reads."""
