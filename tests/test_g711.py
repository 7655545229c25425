"""G.711 against CPython 3.11's audioop, the reference implementation, over every input."""

import warnings

import numpy as np
import pytest

from agent.audio import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


@pytest.mark.parametrize(
    ("encode", "reference"), [(g711.ulaw_encode, audioop.lin2ulaw), (g711.alaw_encode, audioop.lin2alaw)]
)
def test_encode_matches_audioop_for_every_sample(encode, reference):
    expected = np.frombuffer(reference(ALL_PCM.tobytes(), 2), dtype=np.uint8)
    np.testing.assert_array_equal(encode(ALL_PCM), expected)


@pytest.mark.parametrize(
    ("decode", "reference"), [(g711.ulaw_decode, audioop.ulaw2lin), (g711.alaw_decode, audioop.alaw2lin)]
)
def test_decode_matches_audioop_for_every_code(decode, reference):
    expected = np.frombuffer(reference(ALL_CODES.tobytes(), 2), dtype=np.int16)
    np.testing.assert_array_equal(decode(ALL_CODES), expected)
    np.testing.assert_array_equal(decode(ALL_CODES.tobytes()), expected)  # bytes from RTP


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_round_trip_error_is_within_g711_quantisation(law):
    enc, dec = getattr(g711, f"{law}_encode"), getattr(g711, f"{law}_decode")
    t = np.arange(8000) / 8000
    tone = (10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    back = dec(enc(tone)).astype(float)
    snr = 10 * np.log10(np.sum(tone.astype(float) ** 2) / np.sum((back - tone) ** 2))
    assert snr > 35, f"{law} SNR {snr:.1f} dB; G.711 gives about 38 dB"


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        g711._ULAW_ENC[0] = 1
