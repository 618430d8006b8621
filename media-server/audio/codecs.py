"""ITU-T G.711 μ-law and A-law codecs, and the int16 PCM <-> bytes helpers.

The codecs follow the reference G.711 implementation (the Sun ``g711.c`` code that
``audioop`` also uses) bit for bit. Decoding and encoding are table lookups: a 256-entry
table for decoding and a 65536-entry table (one byte per possible int16 sample) for
encoding, both built once at import.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]
"""Mono signed 16-bit PCM samples."""
BytesLike = bytes | bytearray | memoryview
"""Raw audio bytes as transports hand them over."""
PcmLike = npt.NDArray[np.generic] | BytesLike
"""int16 samples, or the bytes of 16-bit little-endian PCM (checked by :func:`as_pcm`)."""

_BYTES_LIKE = (bytes, bytearray, memoryview)


def pcm_from_bytes(b: BytesLike) -> Pcm:
    """The int16 samples of little-endian signed 16-bit PCM bytes (a new, writable array)."""
    if not isinstance(b, _BYTES_LIKE):
        raise ValueError(f"expected bytes of 16-bit PCM, got {type(b).__name__}")
    size = b.nbytes if isinstance(b, memoryview) else len(b)
    if size % 2:
        raise ValueError(
            f"16-bit PCM needs an even number of bytes, got {size} (a sample was cut in half)"
        )
    return np.frombuffer(b, dtype="<i2").astype(np.int16)


def as_pcm(pcm: PcmLike) -> Pcm:
    """``pcm`` as a 1-D int16 array: bytes are decoded as 16-bit little-endian PCM.

    Arrays must already be int16 (a float or int32 array is more likely a bug than audio
    in this format, so it is refused rather than silently cast); a 2-D array is refused.
    An int16 array comes back as it is, not copied.
    """
    if isinstance(pcm, _BYTES_LIKE):
        return pcm_from_bytes(pcm)
    if not isinstance(pcm, np.ndarray):
        raise ValueError(f"expected int16 samples or bytes, got {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        raise ValueError(f"expected int16 samples, got an array of dtype {pcm.dtype}")
    if pcm.ndim != 1:
        raise ValueError(f"expected mono 1-D samples, got an array of shape {pcm.shape}")
    return pcm.astype(np.int16, copy=False)


def pcm_to_bytes(a: npt.NDArray[np.generic]) -> bytes:
    """Little-endian signed 16-bit PCM bytes of int16 samples ``a``."""
    return as_pcm(a).astype("<i2", copy=False).tobytes()


# --- tables -------------------------------------------------------------------------------

_BIAS = 0x84  # μ-law bias (132), added before the segment search
_ULAW_CLIP = 8159  # largest 14-bit magnitude μ-law can represent once biased


def _segment(mag: npt.NDArray[np.int32], ends: list[int]) -> npt.NDArray[np.int32]:
    """Index of the first segment end >= ``mag`` (8 when beyond the last segment)."""
    return np.searchsorted(np.array(ends, dtype=np.int32), mag, side="left").astype(np.int32)


def _build_ulaw_decode() -> Pcm:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)


def _build_alaw_decode() -> Pcm:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, ((t + 0x108) << np.maximum(seg - 1, 0)))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    # Index = the int16 sample's bit pattern as uint16.
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    val = pcm >> 2  # 14-bit sample (arithmetic shift, as the reference code)
    mask = np.where(val < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(val), _ULAW_CLIP) + (_BIAS >> 2)
    seg = _segment(mag, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)
    val = pcm >> 3  # 13-bit sample
    mask = np.where(val >= 0, 0xD5, 0x55)
    mag = np.where(val >= 0, val, -val - 1)
    seg = _segment(mag, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> shift) & 0x0F))
    return (code ^ mask).astype(np.uint8)


_ULAW_TO_PCM = _build_ulaw_decode()
_ALAW_TO_PCM = _build_alaw_decode()
_PCM_TO_ULAW = _build_ulaw_encode()
_PCM_TO_ALAW = _build_alaw_encode()
for _table in (_ULAW_TO_PCM, _ALAW_TO_PCM, _PCM_TO_ULAW, _PCM_TO_ALAW):
    _table.setflags(write=False)


# --- codecs -------------------------------------------------------------------------------


def _codes(data: BytesLike) -> npt.NDArray[np.uint8]:
    if not isinstance(data, _BYTES_LIKE):
        raise ValueError(f"expected G.711 bytes, got {type(data).__name__}")
    return np.frombuffer(data, dtype=np.uint8)


def ulaw_decode(data: BytesLike) -> Pcm:
    """int16 samples of G.711 μ-law bytes (one byte per sample)."""
    return _ULAW_TO_PCM[_codes(data)]


def alaw_decode(data: BytesLike) -> Pcm:
    """int16 samples of G.711 A-law bytes (one byte per sample)."""
    return _ALAW_TO_PCM[_codes(data)]


def ulaw_encode(pcm: PcmLike) -> bytes:
    """G.711 μ-law bytes of int16 samples (or of 16-bit little-endian PCM bytes)."""
    return _PCM_TO_ULAW[as_pcm(pcm).view(np.uint16)].tobytes()


def alaw_encode(pcm: PcmLike) -> bytes:
    """G.711 A-law bytes of int16 samples (or of 16-bit little-endian PCM bytes)."""
    return _PCM_TO_ALAW[as_pcm(pcm).view(np.uint16)].tobytes()
