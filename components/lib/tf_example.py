"""The ``tf.Example`` message without importing TensorFlow.

``tensorflow.core.example.example_pb2`` pulls in all of TensorFlow (~7 s). The wire format
is tiny and stable, so the same messages are declared here from their .proto definitions
(tensorflow/core/example/{feature,example}.proto). ExampleGen needs them to serialize an
example deterministically (map entries sorted), which is what TFX hashes to split.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=1)
def example_class() -> Any:
    """The ``tensorflow.Example`` message class, wire-compatible with TensorFlow's."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FileDescriptorProto(
        name="kubetfx/tf_example.proto", package="kubetfx.tf", syntax="proto3"
    )
    T = descriptor_pb2.FieldDescriptorProto

    def msg(name: str, *fields: tuple[str, int, int, int, str]) -> descriptor_pb2.DescriptorProto:
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
        return m

    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL
    msg("BytesList", ("value", 1, T.TYPE_BYTES, rep, ""))
    msg("FloatList", ("value", 1, T.TYPE_FLOAT, rep, ""))
    msg("Int64List", ("value", 1, T.TYPE_INT64, rep, ""))
    feature = msg(
        "Feature",
        ("bytes_list", 1, T.TYPE_MESSAGE, opt, ".kubetfx.tf.BytesList"),
        ("float_list", 2, T.TYPE_MESSAGE, opt, ".kubetfx.tf.FloatList"),
        ("int64_list", 3, T.TYPE_MESSAGE, opt, ".kubetfx.tf.Int64List"),
    )
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = msg("Features", ("feature", 1, T.TYPE_MESSAGE, rep, ".kubetfx.tf.Features.FeatureEntry"))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=T.TYPE_MESSAGE, label=opt, type_name=".kubetfx.tf.Feature")
    entry.options.map_entry = True
    msg("Example", ("features", 1, T.TYPE_MESSAGE, opt, ".kubetfx.tf.Features"))

    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kubetfx.tf.Example"))


def deterministic(record: bytes) -> bytes:
    """Re-serialize a serialized ``tf.Example`` with its feature map sorted by key."""
    return example_class().FromString(record).SerializeToString(deterministic=True)
