"""Applying a plan: the executor, the site lock, the run timeline, the jobs and volumes records."""
