"""Retention: nothing outlives its purpose. The sweeper (`consultcam.retention.sweeper`) runs each domain's
sweep step in turn; its task, "consultcam.sweep", is `consultcam.retention.tasks`."""
