"""Compile the KubeTFX pipeline to pl_yaml_output/kubetfx_pipeline.yaml for the KFP UI.

python compile.py [--image-registry REGISTRY] [--pvc-name NAME] [--mount-path PATH]
"""

from __future__ import annotations

import argparse

from pipelines.kubetfx_pipeline import (
    DEFAULT_PACKAGE,
    add_cluster_arguments,
    cluster_options,
    compile_pipeline,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default=DEFAULT_PACKAGE, help="where to write the YAML")
    add_cluster_arguments(parser)
    args = parser.parse_args(argv)
    opts = cluster_options(args)
    path = compile_pipeline(args.output, opts)
    print(f"wrote {path} (image {opts.image}, volume {opts.pvc_name} at {opts.mount_path})")


if __name__ == "__main__":
    main()
