"""Old name of ``components.component``, kept until pipelines/ imports IMAGE from there."""

from components.component import IMAGE, IMAGE_REPOSITORY, VERSION, component  # noqa: F401
