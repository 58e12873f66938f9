"""Every label dockyard puts on what it makes: containers, volumes and images.

A container also carries its image's labels (the engine merges them in), so the
two sets share one namespace and live here together. Only names and hashes go
in labels, never a secret.
"""

# On every container and volume a deploy makes.
LABEL_MANAGED = "dockyard.managed"          # "true"
LABEL_SERVICE = "dockyard.service"          # e.g. "nova"
LABEL_HOST = "dockyard.host"                # inventory host name
LABEL_SITE = "dockyard.site"                # the site (config folder) that owns it
LABEL_JOB = "dockyard.job"                  # "true" on a one-shot job's container
LABEL_VERSION = "dockyard.version"          # the dockyard that made it (images too); never hashed
LABEL_RELEASE = "dockyard.release"          # the OpenStack release its service runs (images/releases.yml); never hashed

# What defines a container (dockyard.deploy.wanted.hashing computes them).
LABEL_HASH = "dockyard.config-hash"         # hash of everything that defines the container
LABEL_HASH_PART_PREFIX = "dockyard.hash."   # + a part: image, files, env, command, volumes, runtime
LABEL_HASH_FILE_PREFIX = LABEL_HASH_PART_PREFIX + "file."  # + a config file's name: dockyard.hash.file.keystone.conf
LABEL_HASH_KEY = "dockyard.hash-key"        # the id of the key the hashes are keyed with (not the key)
LABEL_HASH_SECRET_PREFIX = LABEL_HASH_PART_PREFIX + "secret."  # + a password's name: a keyed hash of its value

# On every image a build makes (dockyard.image).
LABEL_IMAGE_HASH = "dockyard.hash"          # the image's tree hash: equal means no build needed
LABEL_IMAGE_NAME = "dockyard.image"         # its name in the catalogue ("rootfs" for the root filesystem)
LABEL_BUILD_TIME = "dockyard.build-time"    # UTC, ISO 8601
# The hash of the image's own build context alone (its Dockerfile and files,
# not its parents'): equal means the image's own files did not change, which
# the in-place keep rule needs besides equal package versions.
LABEL_OWN_HASH = "dockyard.own-hash"
