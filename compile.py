"""Compile the KubeTFX pipeline to pl_yaml_output/kubetfx_pipeline.yaml for the KFP UI.

python compile.py [--image-registry REGISTRY] [--pvc-name NAME] [--mount-path PATH]
"""

from __future__ import annotations

import argparse

from components import names
from pipelines.kubetfx_pipeline import DEFAULT_PACKAGE, ClusterOptions, compile_pipeline, image_for


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default=DEFAULT_PACKAGE, help="where to write the YAML")
    parser.add_argument("--image-registry", default="", help="registry prefix for the runtime image")
    parser.add_argument(
        "--image", default="", help="the whole runtime image reference (overrides the prefix)"
    )
    parser.add_argument(
        "--pvc-name", default=names.DEFAULT_PVC_NAME, help="PersistentVolumeClaim every task mounts"
    )
    parser.add_argument("--mount-path", default=names.DEFAULT_MOUNT_PATH, help="where the volume is mounted")
    args = parser.parse_args(argv)
    opts = ClusterOptions(
        image=image_for(args.image_registry, args.image), pvc_name=args.pvc_name, mount_path=args.mount_path
    )
    path = compile_pipeline(args.output, opts)
    print(f"wrote {path} (image {opts.image}, volume {opts.pvc_name} at {opts.mount_path})")


if __name__ == "__main__":
    main()
