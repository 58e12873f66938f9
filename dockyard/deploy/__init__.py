"""Deploying and operating the images, as a pipeline of stages.

``site`` (the operator's configuration) and the service catalogue make the
``wanted`` state; ``plan`` observes what runs and decides what to do (pure);
``execute`` applies a plan under the site's lock and records it; ``ops`` holds the
operations around a deploy (status, prechecks, post-deploy, compose export).
``api`` runs the stages for each command; ``files`` is the one writer of
dockyard's files, shared by all of them.
"""
