"""The wanted state: the service catalogue and the site turned into volumes, files,
jobs and containers with their hash labels."""
