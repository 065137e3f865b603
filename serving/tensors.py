"""numpy <-> tensorflow.TensorProto, the wire format of PredictRequest/PredictResponse.

Shared by the server and the client so both sides agree on one conversion. Follows tensorflow::Tensor::FromProto:
`tensor_content` (raw little-endian bytes) or the typed `*_val` field, where a single value fills the whole
shape and an empty field means zeros; anything else is a parsing error.
"""

from __future__ import annotations

import numpy as np
from serving.wire import tensor_pb2, tensor_shape_pb2, types_pb2  # without TensorFlow's import

# DataType -> (numpy dtype, TensorProto value field, TF's DataTypeString name).
_DTYPES = {
    types_pb2.DT_FLOAT: (np.float32, "float_val", "float"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val", "double"),
    types_pb2.DT_INT32: (np.int32, "int_val", "int32"),
    types_pb2.DT_UINT8: (np.uint8, "int_val", "uint8"),
    types_pb2.DT_INT16: (np.int16, "int_val", "int16"),
    types_pb2.DT_INT8: (np.int8, "int_val", "int8"),
    types_pb2.DT_UINT16: (np.uint16, "int_val", "uint16"),
    types_pb2.DT_INT64: (np.int64, "int64_val", "int64"),
    types_pb2.DT_UINT32: (np.uint32, "uint32_val", "uint32"),
    types_pb2.DT_UINT64: (np.uint64, "uint64_val", "uint64"),
    types_pb2.DT_BOOL: (np.bool_, "bool_val", "bool"),
    types_pb2.DT_HALF: (np.float16, "half_val", "half"),
    types_pb2.DT_STRING: (np.object_, "string_val", "string"),
}
MAX_FILL_BYTES = 1 << 31  # a few values may not be expanded past this (a malformed request must not OOM us)
_BY_NUMPY = {np.dtype(v[0]): k for k, v in _DTYPES.items() if v[0] is not np.object_}


class TensorParseError(ValueError):
  """The TensorProto cannot be turned into an array (unsupported dtype, wrong number of values)."""


def dtype_name(dtype: int) -> str:
  """TF's DataTypeString for a DataType enum value, e.g. 4 -> "uint8"."""
  entry = _DTYPES.get(dtype)
  if entry is not None:
    return entry[2]
  return types_pb2.DataType.Name(dtype)[3:].lower() if dtype in types_pb2.DataType.values() else str(dtype)


def numpy_dtype(dtype: int) -> np.dtype:
  """The numpy dtype for a DataType enum value (DT_STRING -> object); TypeError if unsupported."""
  entry = _DTYPES.get(dtype)
  if entry is None:
    raise TypeError(f"unsupported TensorFlow dtype {dtype_name(dtype)}")
  return np.dtype(entry[0])


def is_string(dtype: int) -> bool:
  """True for DT_STRING."""
  return dtype == types_pb2.DT_STRING


def datatype_of(array: np.ndarray) -> int:
  """The DataType enum for a numpy array (bytes/str/object arrays are DT_STRING)."""
  if array.dtype.kind in ("O", "S", "U"):
    return types_pb2.DT_STRING
  try:
    return _BY_NUMPY[array.dtype]
  except KeyError:
    raise TypeError(f"numpy dtype {array.dtype} has no TensorFlow wire type; use one of "
                    f"{sorted(str(d) for d in _BY_NUMPY)} or bytes") from None


def to_tensor_proto(value) -> tensor_pb2.TensorProto:
  """Encodes a numpy array (or anything np.asarray accepts) of shape [d0, d1, ...] as a TensorProto.

  Numeric arrays use `tensor_content`; strings go to `string_val` (str is UTF-8 encoded).
  """
  array = np.asarray(value)
  dtype = datatype_of(array)
  proto = tensor_pb2.TensorProto(
      dtype=dtype,
      tensor_shape=tensor_shape_pb2.TensorShapeProto(
          dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape]))
  if dtype == types_pb2.DT_STRING:
    proto.string_val.extend(v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1))
  else:
    proto.tensor_content = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
  return proto


def from_tensor_proto(proto: tensor_pb2.TensorProto, max_fill_bytes: int = MAX_FILL_BYTES) -> np.ndarray:
  """Decodes a TensorProto into a numpy array of its shape (DT_STRING -> object array of bytes).

  Raises TensorParseError where tensorflow::Tensor::FromProto would fail, and when a few values (or none)
  would be expanded to more than `max_fill_bytes` (a small message must not allocate gigabytes).
  """
  entry = _DTYPES.get(proto.dtype)
  if entry is None:
    raise TensorParseError(f"unsupported dtype {dtype_name(proto.dtype)}")
  np_dtype, field, _ = entry
  if proto.tensor_shape.unknown_rank:
    raise TensorParseError("tensor shape has unknown rank")
  shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
  if any(d < 0 for d in shape):
    raise TensorParseError(f"negative dimension in shape {list(shape)}")
  count = int(np.prod(shape, dtype=np.int64))
  if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
    itemsize = np.dtype(np_dtype).itemsize
    if len(proto.tensor_content) != count * itemsize:
      raise TensorParseError(f"tensor_content has {len(proto.tensor_content)} bytes, shape {list(shape)} "
                             f"needs {count * itemsize}")
    return np.frombuffer(proto.tensor_content, dtype=np.dtype(np_dtype).newbyteorder("<")).astype(
        np_dtype, copy=False).reshape(shape)
  values = getattr(proto, field)
  if proto.dtype == types_pb2.DT_STRING:
    flat = np.empty(len(values), dtype=object)
    flat[:] = list(values)
  elif proto.dtype == types_pb2.DT_HALF:
    flat = np.asarray(values, dtype=np.uint16).view(np.float16)
  else:
    flat = np.asarray(values, dtype=np_dtype)
  if flat.size == count:
    return flat.reshape(shape)
  if count * max(np.dtype(np_dtype).itemsize, 8) > max_fill_bytes:
    raise TensorParseError(f"shape {list(shape)} with {flat.size} values would expand to more than "
                           f"{max_fill_bytes} bytes")
  if flat.size == 0 and proto.dtype != types_pb2.DT_STRING:
    return np.zeros(shape, dtype=np_dtype)
  if flat.size == 1 or (flat.size == 0 and proto.dtype == types_pb2.DT_STRING):
    fill = flat[0] if flat.size else b""
    out = np.empty(shape, dtype=np_dtype)
    out[...] = fill
    return out
  raise TensorParseError(f"{flat.size} values in {field} do not fill shape {list(shape)}")
