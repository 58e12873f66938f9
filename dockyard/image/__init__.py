"""Image building: the catalogue, rendering, the base root filesystem, the scheduler."""
