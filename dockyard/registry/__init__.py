"""The site's image registry: how images reach remote hosts (docs/registry.md).

``client``: what the registry holds (tag -> manifest digest and image id), over
its HTTP API; ``tls``: its CA and server certificate; ``service``: running it on
the deployment host (``dockyard registry``), planned like any deploy.
"""
