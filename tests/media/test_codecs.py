"""G.711 μ-law and A-law against known code points, the stdlib reference, and round trips;
and the int16 PCM <-> bytes helpers."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import pytest

from media_server.audio.codecs import (
    alaw_decode,
    alaw_encode,
    as_pcm,
    pcm_from_bytes,
    pcm_to_bytes,
    ulaw_decode,
    ulaw_encode,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the C reference implementation (deprecated; removed in Python 3.13)

ALL_CODES = bytes(range(256))
EVERY_SAMPLE = np.arange(-32768, 32768, dtype=np.int16)


def test_ulaw_known_code_points() -> None:
    decoded = ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00, 0xFE, 0x7E]))
    # 0xFF is +0 and 0x7F is -0; 0x80 / 0x00 are the largest magnitudes.
    assert decoded.tolist() == [0, 0, 32124, -32124, 8, -8]
    assert decoded.dtype == np.int16
    assert ulaw_encode(np.array([0, 32767, -32768, 8, -8], dtype=np.int16)) == bytes(
        [0xFF, 0x80, 0x00, 0xFE, 0x7E]
    )


def test_alaw_known_code_points() -> None:
    decoded = alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))
    assert decoded.tolist() == [8, -8, 32256, -32256]
    assert decoded.dtype == np.int16
    assert alaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)) == bytes(
        [0xD5, 0x55, 0xAA, 0x2A]
    )


def test_decoding_matches_audioop_for_every_code() -> None:
    assert ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_encoding_matches_audioop_for_every_sample_value() -> None:
    linear = EVERY_SAMPLE.astype("<i2").tobytes()
    assert ulaw_encode(EVERY_SAMPLE) == audioop.lin2ulaw(linear, 2)
    assert alaw_encode(EVERY_SAMPLE) == audioop.lin2alaw(linear, 2)


def test_encoding_matches_audioop_on_a_signal() -> None:
    rng = np.random.default_rng(1)
    pcm = np.clip(rng.standard_normal(8000) * 6000, -32768, 32767).astype(np.int16)
    data = pcm.astype("<i2").tobytes()
    assert ulaw_encode(pcm) == audioop.lin2ulaw(data, 2)
    assert alaw_encode(data) == audioop.lin2alaw(data, 2)


def test_every_code_decodes_and_reencodes_to_itself() -> None:
    # Except μ-law's negative zero 0x7F, which encodes back as +0 (0xFF).
    reencoded = ulaw_encode(ulaw_decode(ALL_CODES))
    assert reencoded == bytes([0xFF if c == 0x7F else c for c in range(256)])
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES


def _ulaw_step(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """μ-law quantization step at ``x``: 8 near zero, doubling per segment up to 1024."""
    biased = np.abs(x) + 132
    step: npt.NDArray[np.int64] = np.exp2(np.floor(np.log2(biased)) - 4).astype(np.int64)
    return step


def _alaw_step(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A-law quantization step at ``x``: 16 below 512, then doubling per segment to 1024."""
    mag = np.maximum(np.abs(x), 256)
    step: npt.NDArray[np.int64] = np.exp2(np.floor(np.log2(mag)) - 4).astype(np.int64)
    return step


def test_round_trip_error_is_within_half_a_step() -> None:
    # Beyond the largest code points the error is just clipping to them.
    ulaw_in = EVERY_SAMPLE[np.abs(EVERY_SAMPLE.astype(np.int32)) <= 32124].astype(np.int64)
    ulaw_out = ulaw_decode(ulaw_encode(ulaw_in.astype(np.int16))).astype(np.int64)
    err = np.abs(ulaw_out - ulaw_in)
    positive = ulaw_in >= 0
    assert np.all(err[positive] <= _ulaw_step(ulaw_in[positive]) // 2)
    # Negative samples lose up to 3 more to the encoder's truncation to 14 bits (x >> 2
    # rounds towards -inf), and at a segment edge the step is the wider segment's.
    step = np.maximum(_ulaw_step(ulaw_in), _ulaw_step(ulaw_out))
    assert np.all(err <= step // 2 + 3)
    assert np.max(err) == 512 + 3  # half the top segment's step, so the bound is not slack

    alaw_in = EVERY_SAMPLE[np.abs(EVERY_SAMPLE.astype(np.int32)) <= 32256].astype(np.int64)
    alaw_out = alaw_decode(alaw_encode(alaw_in.astype(np.int16))).astype(np.int64)
    assert np.all(np.abs(alaw_out - alaw_in) <= _alaw_step(alaw_in) // 2)

    # Small signals survive almost exactly; loud ones within ~3 %.
    small = np.arange(-30, 31, dtype=np.int16)
    assert np.max(np.abs(ulaw_decode(ulaw_encode(small)) - small)) <= 4 + 3
    loud = np.array([10000, -20000, 30000], dtype=np.int16)
    assert np.allclose(ulaw_decode(ulaw_encode(loud)), loud, rtol=0.035)
    assert np.allclose(alaw_decode(alaw_encode(loud)), loud, rtol=0.035)


def test_encode_accepts_bytes_and_arrays_alike() -> None:
    pcm = np.array([0, 1000, -1000, 32767], dtype=np.int16)
    assert ulaw_encode(pcm) == ulaw_encode(pcm.tobytes()) == ulaw_encode(bytearray(pcm.tobytes()))
    assert alaw_encode(pcm[::2]) == alaw_encode(pcm[::2].copy())


def test_empty_input() -> None:
    assert ulaw_decode(b"").size == 0
    assert alaw_decode(b"").dtype == np.int16
    assert ulaw_encode(np.zeros(0, dtype=np.int16)) == b""
    assert alaw_encode(b"") == b""
    assert pcm_from_bytes(b"").size == 0
    assert pcm_to_bytes(np.zeros(0, dtype=np.int16)) == b""


def test_pcm_bytes_helpers_round_trip_little_endian() -> None:
    pcm = np.array([1, -2, 32767, -32768], dtype=np.int16)
    data = pcm_to_bytes(pcm)
    assert data == b"\x01\x00\xfe\xff\xff\x7f\x00\x80"
    back = pcm_from_bytes(data)
    assert back.dtype == np.int16 and back.tolist() == pcm.tolist()
    back[0] = 5  # a writable copy, not a read-only view of the bytes


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        pcm_from_bytes(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="even number of bytes"):
        ulaw_encode(b"\x00")
    with pytest.raises(ValueError, match="int16"):
        ulaw_encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="int16"):
        pcm_to_bytes(np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match="int16"):
        as_pcm(np.zeros(4, dtype=">i2"))
    with pytest.raises(ValueError, match="mono"):
        alaw_encode(np.zeros((2, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="bytes"):
        ulaw_decode([1, 2, 3])  # type: ignore[arg-type]
