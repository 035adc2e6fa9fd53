"""Kafka's default partition of a user id: murmur2, as the Java client and aiokafka.

Pure arithmetic on 32-bit words, once per user's first event in a batch and
per record written. Here in the core so that it compiles with it
(`eventpatterns/compiled.py`): with mypyc's native 64-bit integers (`i64`, plain
`int` when interpreted) it takes 0.5 us per id instead of 1.0.
"""

from __future__ import annotations

import struct

from mypy_extensions import i64

_M: i64 = 0x5BD1E995
_MASK: i64 = 0xFFFFFFFF
_WORDS = [struct.Struct(f"<{count}I") for count in range(64)]


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition for a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as aiokafka's, in half its time interpreted.

    The words are unpacked at once, and a 32-bit product is masked once instead
    of after every step (a product of two 32-bit values fits in an i64).
    """
    length: i64 = len(data)
    h: i64 = 0x9747B28C ^ length
    count = length >> 2
    unpack = _WORDS[count] if count < len(_WORDS) else struct.Struct(f"<{count}I")
    for word in unpack.unpack_from(data):
        k: i64 = word
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)
