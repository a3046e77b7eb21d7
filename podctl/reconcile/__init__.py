"""Desired vs observed: the pure planner, the decision-free apply step, the controller loop."""
