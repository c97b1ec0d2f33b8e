"""Compile the KubeTFX pipeline to pl_yaml_output/kubetfx_pipeline.yaml for the KFP UI.

python compile.py [--image-registry REGISTRY] [--pvc-name NAME] [--mount-path PATH]
                  [--tune-parallelism N [--tune-fanin collected|unrolled]]

--tune-parallelism N (N > 1) compiles tune as N parallel trial-group tasks and a fan-in that picks
what one tune task would (tuner 'random' only). The fan-in takes the groups' results through
dsl.Collected (KFP 2.14+); --tune-fanin unrolled compiles N named tasks and a fan-in after them
that reads their results from the volume, for KFP 2.5, whose driver fails a Collected consumer.
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
    try:
        opts = cluster_options(args)
    except ValueError as e:  # --tune-parallelism out of range: argparse's one line and usage
        parser.error(str(e))
    path = compile_pipeline(args.output, opts)
    tune = (
        f", tune in {opts.tune_parallelism} trial groups ({opts.tune_fanin})"
        if opts.tune_parallelism > 1
        else ""
    )
    print(f"wrote {path} (image {opts.image}, volume {opts.pvc_name} at {opts.mount_path}{tune})")


if __name__ == "__main__":
    main()
