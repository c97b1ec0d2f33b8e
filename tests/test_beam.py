"""Beam options: typed options reach Beam unchanged, a local runner skips Prism's download."""

import pytest

from components.errors import StageError
from components.lib.beam import pipeline_options


@pytest.mark.parametrize(
    "args, runner",
    [
        ("--runner=DirectRunner --direct_num_workers=1", "FnApiRunner"),
        ("", "FnApiRunner"),
        ("--runner=direct", "FnApiRunner"),
        ("--runner=DataflowRunner --project=p --region=europe-west1", "DataflowRunner"),
        ("--runner=FlinkRunner --flink_master=host:8081", "FlinkRunner"),
        ("--runner=PrismRunner", "PrismRunner"),
    ],
)
def test_runner_choice(args, runner):
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    options = pipeline_options(args, "transform")
    assert options.view_as(StandardOptions).runner == runner
    if "direct_num_workers" in args:
        assert options.view_as(DirectOptions).direct_num_workers == 1
    if "europe-west1" in args:
        assert options.get_all_options()["region"] == "europe-west1"


def test_unparsable_options_name_the_stage():
    with pytest.raises(StageError, match=r"^\[evaluate\] beam_args .* cannot be parsed"):
        pipeline_options("--runner='unterminated", "evaluate")
