"""Ingest's output shards: GZIP TFRecord files of serialized tf.train.Example, written deterministically.

`<output_dir>/domain_<d>/<split>-SSSSS-of-NNNNN.tfrecord.gz` (SHARD_NAME); components.data reads them with
tf.data.TFRecordDataset(compression_type="GZIP"). The writer is plain Python (gzip + the TFRecord framing with
its masked CRC-32C), so Beam workers need no TensorFlow.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import time

import google_crc32c

SHARD_NAME = "{split}-{index:05d}-of-{count:05d}.tfrecord.gz"
GZIP_LEVEL = 0  # gzip container with stored blocks: the PNG payload does not compress (level 1: +0%, 11 ms/image)


def num_shards(count: int, records_per_shard: int) -> int:
  """Shards of one domain/split: ceil(count / records_per_shard), at least 1."""
  return max(1, math.ceil(count / records_per_shard))


def _masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC-32C of `data`."""
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_tfrecord_shard(path: str, records) -> None:
  """Writes serialized records as a GZIP TFRecord file, atomically (temp file + rename), deterministically
  (gzip mtime 0, no file name; GZIP_LEVEL)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}-{time.monotonic_ns()}"
  with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL,
                                             mtime=0) as out:
    for data in records:
      header = struct.pack("<Q", len(data))
      out.write(header)
      out.write(struct.pack("<I", _masked_crc32c(header)))
      out.write(data)
      out.write(struct.pack("<I", _masked_crc32c(data)))
  os.replace(tmp, path)


def shard_path(output_dir: str, domain: str, split: str, index: int, count: int) -> str:
  """`<output_dir>/domain_<d>/<split>-SSSSS-of-NNNNN.tfrecord.gz`."""
  return os.path.join(output_dir, f"domain_{domain}", SHARD_NAME.format(split=split, index=index, count=count))
