"""Deploying and operating the images: configuration, catalogue, planning, applying."""
