"""Reading images and stacks, writing and reading indexed label masks.

The submodules are imported on demand (``segstudio.io.images``,
``segstudio.io.masks``) so that importing this package costs nothing.
"""
