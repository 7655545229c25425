"""G.711 mu-law and A-law, as lookup tables built once from the ITU-T algorithm.

Bit-exact with CPython's `audioop` (which follows the Sun reference code): the encoders
take 16-bit linear PCM, drop it to 14 bits (mu-law) or 13 bits (A-law), then segment.
Tables are read-only, so sharing them between threads is safe.
"""

from __future__ import annotations

import numpy as np

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _build_ulaw_encode() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")
    code = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return _readonly((code ^ mask).astype(np.uint8))


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return _readonly(np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16))


def _build_alaw_encode() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")
    s = np.minimum(seg, 7)
    quant = np.where(s < 2, mag >> 1, mag >> np.maximum(s, 1)) & 0xF
    code = np.where(seg >= 8, 0x7F, (s << 4) | quant)
    return _readonly((code ^ mask).astype(np.uint8))


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return _readonly(np.where(a & 0x80, t, -t).astype(np.int16))


_ULAW_ENC = _build_ulaw_encode()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_ENC = _build_alaw_encode()
_ALAW_DEC = _build_alaw_decode()


def _index(pcm: np.ndarray) -> np.ndarray:
    return np.asarray(pcm, dtype=np.int16).astype(np.int32) + 32768


def ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> mu-law bytes (uint8)."""
    return np.asarray(_ULAW_ENC[_index(pcm)])


def ulaw_decode(data: np.ndarray | bytes) -> np.ndarray:
    """mu-law bytes -> int16 PCM."""
    return np.asarray(_ULAW_DEC[np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data])


def alaw_encode(pcm: np.ndarray) -> np.ndarray:
    """int16 PCM -> A-law bytes (uint8)."""
    return np.asarray(_ALAW_ENC[_index(pcm)])


def alaw_decode(data: np.ndarray | bytes) -> np.ndarray:
    """A-law bytes -> int16 PCM."""
    return np.asarray(_ALAW_DEC[np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data])
