"""A testbed of real container engines: several "hosts" on this one machine.

Each host is a network namespace with its own Docker daemon reachable over TLS
(``tcp://ADDRESS:2376``, client certificates). See ``plan`` for the topology,
``python3 -m dockyard.testbed --help`` for the commands, docs/testbed.md.
"""

from .daemon import client, tls_config  # noqa: F401
from .net import TestbedError  # noqa: F401
from .plan import Host, Layout, Subnet, docker_env, plan_hosts  # noqa: F401
from .testbed import Testbed  # noqa: F401
