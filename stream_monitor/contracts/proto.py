"""The shipped Protobuf schema (``schemas/stream_monitor.proto``) as message classes, built at
run time from its descriptor (the protobuf runtime, no ``protoc``), and the reading of any
decoded Protobuf message as the plain values of the JSON contract.

The descriptor here and the ``.proto`` file are one schema written twice: a unit test compiles
the file with ``protoc`` (grpcio-tools) and compares the two.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["PROTO_FILE", "PROTO_PACKAGE", "message_class", "message_to_obj"]

PROTO_FILE = "stream_monitor.proto"
PROTO_PACKAGE = "stream_monitor.v1"

# (message, [(field, number, type, message type or None, repeated map entry?)]) in file order.
_T_DOUBLE, _T_INT64, _T_BOOL, _T_STRING, _T_MESSAGE = 1, 3, 8, 9, 11


def _file_descriptor_proto() -> Any:
    from google.protobuf import descriptor_pb2 as d

    fdp = d.FileDescriptorProto(name=PROTO_FILE, package=PROTO_PACKAGE, syntax="proto3")
    pkg = f".{PROTO_PACKAGE}"
    opt, rep = d.FieldDescriptorProto.LABEL_OPTIONAL, d.FieldDescriptorProto.LABEL_REPEATED

    def field(msg: Any, name: str, number: int, ftype: int, type_name: str | None = None,
              label: int = opt, json_name: str | None = None) -> Any:
        f = msg.field.add(name=name, number=number, type=ftype, label=label)
        f.json_name = json_name or _json_name(name)
        if type_name is not None:
            f.type_name = type_name
        return f

    ev = fdp.message_type.add(name="InferenceEvent")
    field(ev, "event_id", 1, _T_STRING)
    field(ev, "model_id", 2, _T_STRING)
    field(ev, "model_version", 3, _T_MESSAGE, f"{pkg}.Value")
    field(ev, "timestamp", 4, _T_MESSAGE, f"{pkg}.EventTime")
    field(ev, "features", 5, _T_MESSAGE, f"{pkg}.InferenceEvent.FeaturesEntry", rep)
    field(ev, "prediction", 6, _T_MESSAGE, f"{pkg}.Value")
    field(ev, "label", 7, _T_MESSAGE, f"{pkg}.Value")
    field(ev, "probabilities", 8, _T_MESSAGE, f"{pkg}.InferenceEvent.ProbabilitiesEntry", rep)
    field(ev, "embeddings", 9, _T_DOUBLE, None, rep)
    entry = ev.nested_type.add(name="FeaturesEntry")
    entry.options.map_entry = True
    field(entry, "key", 1, _T_STRING)
    field(entry, "value", 2, _T_MESSAGE, f"{pkg}.Value")
    entry = ev.nested_type.add(name="ProbabilitiesEntry")
    entry.options.map_entry = True
    field(entry, "key", 1, _T_STRING)
    field(entry, "value", 2, _T_DOUBLE)

    lab = fdp.message_type.add(name="LabelEvent")
    field(lab, "event_id", 1, _T_STRING)
    field(lab, "model_id", 2, _T_STRING)
    field(lab, "label", 3, _T_MESSAGE, f"{pkg}.Value")
    field(lab, "timestamp", 4, _T_MESSAGE, f"{pkg}.EventTime")

    val = fdp.message_type.add(name="Value")
    val.oneof_decl.add(name="kind")
    for name, number, ftype in (("number", 1, _T_DOUBLE), ("integer", 2, _T_INT64),
                                ("text", 3, _T_STRING), ("flag", 4, _T_BOOL)):
        field(val, name, number, ftype).oneof_index = 0

    when = fdp.message_type.add(name="EventTime")
    when.oneof_decl.add(name="kind")
    for name, number, ftype in (("epoch_seconds", 1, _T_DOUBLE), ("iso8601", 2, _T_STRING)):
        field(when, name, number, ftype).oneof_index = 0
    return fdp


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


@lru_cache(maxsize=1)
def _classes() -> dict[str, Any]:
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(_file_descriptor_proto())
    del fd
    out = {}
    for name in ("InferenceEvent", "LabelEvent", "Value", "EventTime"):
        desc = pool.FindMessageTypeByName(f"{PROTO_PACKAGE}.{name}")
        out[name] = message_factory.GetMessageClass(desc)
    return out


def message_class(name: str) -> Any:
    """A message class of the shipped schema: ``InferenceEvent``, ``LabelEvent``, ``Value`` or
    ``EventTime``.

    >>> ev = message_class("InferenceEvent")(event_id="e1", model_id="m")
    >>> ev.features["x"].number = 1.5
    >>> message_to_obj(ev)["features"]
    {'x': 1.5}
    """
    return _classes()[name]


def file_descriptor_proto() -> Any:
    """The shipped schema's ``FileDescriptorProto`` (a fresh copy)."""
    return _file_descriptor_proto()


def message_to_obj(msg: Any) -> Any:
    """A decoded Protobuf message as plain values (any schema, not only ours): fields by their
    proto names, maps as dicts, repeated fields as lists, enums by name, a message field that is
    not set as None. A message made of one ``oneof`` and nothing else (a value union, like our
    ``Value``) is read as the value it holds, None when none is set.

    >>> Value = message_class("Value")
    >>> message_to_obj(Value(integer=3)), message_to_obj(Value(text="a")), message_to_obj(Value())
    (3, 'a', None)
    """
    desc = msg.DESCRIPTOR
    if len(desc.oneofs) == 1 and len(desc.oneofs[0].fields) == len(desc.fields):
        which = msg.WhichOneof(desc.oneofs[0].name)
        if which is None:
            return None
        return _field_value(desc.fields_by_name[which], getattr(msg, which))
    out: dict[str, Any] = {}
    for f in desc.fields:
        value = getattr(msg, f.name)
        if _is_map(f):
            vf = f.message_type.fields_by_name["value"]
            out[f.name] = {k: _field_value(vf, v) for k, v in value.items()}
        elif _repeated(f):
            out[f.name] = [_field_value(f, v) for v in value]
        elif f.message_type is not None and not msg.HasField(f.name):
            out[f.name] = None
        else:
            out[f.name] = _field_value(f, value)
    return out


def _repeated(f: Any) -> bool:
    rep = getattr(f, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return bool(f.label == f.LABEL_REPEATED)


def _is_map(f: Any) -> bool:
    mt = f.message_type
    return mt is not None and _repeated(f) and mt.GetOptions().map_entry


def _field_value(f: Any, value: Any) -> Any:
    if f.message_type is not None:
        return message_to_obj(value)
    if f.enum_type is not None:
        ev = f.enum_type.values_by_number.get(value)
        return ev.name if ev is not None else value
    return value
