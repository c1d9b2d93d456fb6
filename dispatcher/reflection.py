"""gRPC server reflection in both spellings: the standard ``grpc.reflection.v1`` and the older
``grpc.reflection.v1alpha`` that some clients still ask for.

grpcio-reflection ships the v1alpha service only. The v1 service is the same protocol under
another package name: its request and response messages are field for field those of v1alpha,
so their bytes on the wire are identical. The v1 service is therefore served by grpcio-reflection's
own (v1alpha) servicer behind a handler registered under the v1 method name, and the v1 file
descriptor, derived at start-up from v1alpha's by renaming the package, is added to the pool so
that a client can describe the v1 service itself too.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
"""Full name of the standard reflection service."""
V1_METHOD = f"/{V1_SERVICE_NAME}/ServerReflectionInfo"
"""Its one (bidirectional streaming) method."""
V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
"""Full name of the older reflection service."""
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """Put ``grpc/reflection/v1/reflection.proto`` into ``pool`` (once), made from v1alpha's."""
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old_prefix = f".{proto.package}."
    proto.name = _V1_FILE
    proto.package = V1_PACKAGE
    proto.options.Clear()  # v1alpha's options name v1alpha's language packages
    for message in proto.message_type:
        for fld in message.field:
            if fld.type_name.startswith(old_prefix):
                fld.type_name = f".{V1_PACKAGE}." + fld.type_name.removeprefix(old_prefix)
    for service in proto.service:
        for method in service.method:
            method.input_type = f".{V1_PACKAGE}." + method.input_type.removeprefix(old_prefix)
            method.output_type = f".{V1_PACKAGE}." + method.output_type.removeprefix(old_prefix)
    pool.Add(proto)


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> tuple[str, ...]:
    """Serve reflection v1 and v1alpha on ``server`` for ``service_names``; returns every name listed.

    Both reflection services list themselves, so a client sees which spellings are offered.
    """
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    _add_v1_descriptor(descriptor_pool.Default())
    reflection.enable_server_reflection(names, server)
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    return names
