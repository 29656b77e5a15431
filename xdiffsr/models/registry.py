"""Released model weights: a packaged registry of sha256 hashes, fetched and cached with pooch.

Names resolve in this order (see ``docs/weights.md``):

1. a file shipped inside the package (``xdiffsr/data/<name>.safetensors``) whose sha256 matches
   the registry: used in place, with no network;
2. a file in the cache (``$XDIFFSR_CACHE``, else ``pooch.os_cache("xdiffsr")``) whose sha256
   matches: used in place, with no network;
3. otherwise a download from ``$XDIFFSR_WEIGHTS_URL`` (else :data:`BASE_URL`) into the cache,
   with a progress bar, kept only if its sha256 matches.

A file whose hash does not match is never loaded: a bad download is deleted by pooch, a bad cached
file is deleted (with a warning) before it is downloaded again.

References
----------
.. [1] Uieda, L. et al. (2020). Pooch: A friend to fetch your data files. JOSS 5(45), 1943.
       https://www.fatiando.org/pooch/latest/sample-data.html
.. [2] safetensors format: https://huggingface.co/docs/safetensors
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pooch
import torch

from xdiffsr.cache import ProcessCache
from xdiffsr.errors import ModelError, XDiffSRWarning
from xdiffsr.models.diffusion import DiffusionModel
from xdiffsr.models.latent import LatentDiffusionModel, model_kind

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
REGISTRY_FILE = DATA_DIR / "registry.txt"
SUFFIX = ".safetensors"
ALIASES = {"default": "xdiffsr-default", "latent": "xdiffsr-latent"}
WEIGHTS_RELEASE = "v1"
BASE_URL = f"https://github.com/xdiffsr/xdiffsr-weights/releases/download/{WEIGHTS_RELEASE}/"
ENV_CACHE = "XDIFFSR_CACHE"
ENV_URL = "XDIFFSR_WEIGHTS_URL"

__all__ = [
    "BASE_URL",
    "ModelRef",
    "clear_model_cache",
    "fetch_weights",
    "load_model",
    "make_fetcher",
    "model_cache_stats",
    "open_model",
    "registry",
]


def registry(path: str | Path | None = None) -> dict[str, str]:
    """Read a registry file of ``<file name> sha256:<hex>`` lines (``#`` starts a comment).

    Parameters
    ----------
    path : path, optional
        Registry file; default the packaged ``xdiffsr/data/registry.txt``.

    Returns
    -------
    dict
        File name (e.g. ``"xdiffsr-default.safetensors"``) -> ``"sha256:<64 hex digits>"``.
    """
    path = Path(REGISTRY_FILE if path is None else path)
    if not path.is_file():
        return {}
    out = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        digest = fields[1].lower().removeprefix("sha256:") if len(fields) == 2 else ""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ModelError(
                f"{path}:{lineno}: expected '<file name> sha256:<64 hex digits>', got {raw!r}; "
                "fix the registry line (compute the hash with `sha256sum FILE`)."
            )
        out[fields[0]] = f"sha256:{digest}"
    return out


def _file_name(name: str, entries: Mapping[str, str]) -> str:
    """Registry file name for a model name, alias or file name; ModelError if unknown."""
    base = ALIASES.get(name, name)
    for cand in (base, base + SUFFIX):
        if cand in entries:
            return cand
    models = sorted(k.removesuffix(SUFFIX) for k in entries)
    raise ModelError(
        f"unknown model {name!r}; available models: {models or 'none registered'} "
        f"(aliases: {ALIASES}). Give one of these names, or the path of a {SUFFIX} file "
        "written by DiffusionModel.save."
    )


_FILE_HASHES: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> sha256


#: (reference, device) -> model; ``loads`` counts model files read
_MODELS = ProcessCache("loads", "hits", exclusive=True)


def _file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read now."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256(path: str | Path) -> str:
    """sha256 of a file, remembered per (path, mtime, size): a model file's identity."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = _file_sha256(path)
    return _FILE_HASHES[key]


def _verified(path: Path, known: str, what: str, then: str) -> bool:
    """True if ``path`` exists and its sha256 is ``known``; warn if it exists but differs."""
    if not path.is_file():
        return False
    got = _file_sha256(path)  # never the remembered hash: this check guards the content
    if got == known.removeprefix("sha256:"):
        return True
    warnings.warn(
        f"{what} {str(path)!r} has sha256 {got}, expected {known}; not using it, {then}.",
        XDiffSRWarning,
        stacklevel=3,
    )
    return False


def make_fetcher(
    base_url: str | None = None,
    entries: Mapping[str, str] | None = None,
    cache: str | Path | None = None,
) -> pooch.Pooch:
    """A :class:`pooch.Pooch` for the weights (the environment is read now, not at import).

    Parameters
    ----------
    base_url : str, optional
        Folder URL holding the files; default ``$XDIFFSR_WEIGHTS_URL``, else :data:`BASE_URL`.
    entries : mapping, optional
        File name -> ``"sha256:<hex>"``; default :func:`registry`.
    cache : path, optional
        Cache folder; default ``$XDIFFSR_CACHE``, else ``pooch.os_cache("xdiffsr")``.
    """
    if base_url:
        url = _check_url(base_url, "base_url")
    elif os.environ.get(ENV_URL):
        url = _check_url(os.environ[ENV_URL], f"${ENV_URL}")
    else:
        url = BASE_URL
    return pooch.create(
        path=cache or pooch.os_cache("xdiffsr"),
        base_url=url if url.endswith("/") else url + "/",
        registry=dict(registry() if entries is None else entries),
        env=None if cache else ENV_CACHE,
    )


def _check_url(url: str, name: str) -> str:
    """A weights folder URL with an http, https or file scheme (ModelError saying what is wrong)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https", "file"):
        what = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ModelError(
            f"{name}={url!r} has {what}; give a folder URL starting with https://, http:// or "
            "file:// (e.g. file:///data/xdiffsr-weights/)."
        )
    if parts.scheme != "file" and not parts.netloc:
        raise ModelError(f"{name}={url!r} has no host; give e.g. https://example.org/weights/.")
    if parts.scheme == "file" and not parts.path:
        raise ModelError(f"{name}={url!r} has no folder path; give e.g. file:///data/weights/.")
    return url.strip()


def _check_cache(folder: Path) -> None:
    """ModelError unless the cache folder exists (or can be created) and is writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".xdiffsr-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ModelError(
            f"the weights cache folder {str(folder)!r} is not writable ({err}); set "
            f"${ENV_CACHE} to a writable folder, or place the verified file there."
        ) from err


def fetch_weights(
    name: str, *, progress: bool = True, registry: Mapping[str, str] | None = None
) -> Path:
    """Local path of a registered model's weights, downloading them once if needed.

    Parameters
    ----------
    name : str
        Model name (``"xdiffsr-default"``), its file name, or an alias (``"default"``).
    progress : bool
        Show a tqdm progress bar while downloading.
    registry : mapping, optional
        File name -> ``"sha256:<hex>"`` to use instead of the packaged registry.

    Returns
    -------
    Path
        A file whose sha256 matches the registry.

    Raises
    ------
    ModelError
        Unknown name (the message lists the available ones), hash mismatch of the download, or
        a network error (the message names the URL and the environment variables).
    """
    entries = _read_entries(registry)
    fname = _file_name(str(name), entries)
    known = entries[fname]
    if _verified(
        DATA_DIR / fname, known, "packaged model file", "using the cache (reinstall to fix)"
    ):
        return DATA_DIR / fname
    pup = make_fetcher(entries=entries)
    cached = Path(pup.abspath) / fname
    if _verified(cached, known, "cached model file", "deleting it and downloading again"):
        return cached
    _check_cache(Path(pup.abspath))
    cached.unlink(missing_ok=True)  # a stale or tampered copy is never used nor kept
    url = pup.get_url(fname)
    if urlsplit(url).scheme == "file":
        downloader = _copy_file_url
    else:
        downloader = pooch.HTTPDownloader(progressbar=progress)
    try:
        return Path(pup.fetch(fname, downloader=downloader))
    except OSError as err:  # requests' errors derive from OSError
        raise ModelError(
            f"cannot download model {fname!r} from {url}: {err}. Check the network, or set "
            f"${ENV_URL} to a reachable mirror, or place the verified file in the cache "
            f"{str(pup.abspath)!r} (chosen by ${ENV_CACHE})."
        ) from err
    except ValueError as err:  # pooch's hash check; it has already deleted the download
        got = str(err).split("but got ")[-1].split(".")[0]
        raise ModelError(
            f"the download of model {fname!r} from {url} has sha256 {got}, expected {known}; "
            "the file was deleted and not used. The mirror may serve a different release: check "
            f"${ENV_URL}, or upgrade xdiffsr if the registry is outdated."
        ) from err


def _copy_file_url(url: str, output_file, pup: pooch.Pooch) -> None:
    """A pooch downloader for ``file://`` mirrors: copy the local file (OSError if missing)."""
    data = Path(url2pathname(urlsplit(url).path)).read_bytes()
    if hasattr(output_file, "write"):
        output_file.write(data)
    else:
        Path(output_file).write_bytes(data)


def _read_entries(entries: Mapping[str, str] | None) -> dict[str, str]:
    return registry() if entries is None else dict(entries)


def _is_bare_name(arg) -> bool:
    """A plain string with no directory part (a name, an alias or a registry file name)."""
    return isinstance(arg, str) and "/" not in arg and os.sep not in arg


@dataclass(frozen=True)
class ModelRef:
    """A light, picklable reference to a model file: what a task carries instead of the weights.

    Every model loaded by :func:`load_model` carries its own as ``model.reference``.

    Parameters
    ----------
    sha256 : str
        Hex digest of the safetensors file; the cache key, and checked before a worker loads.
    path : str, optional
        Where the file lies (on the client; a worker uses it if it sees the same file).
    name : str, optional
        Registered name (``"default"``); a worker without the file fetches it with
        :func:`fetch_weights` (pooch cache, hash-checked).
    """

    sha256: str
    path: str | None = None
    name: str | None = None

    @property
    def token(self) -> str:
        """``"sha256:<hex>"``: the model's identity in task keys."""
        return f"sha256:{self.sha256}"

    @classmethod
    def of(cls, name_or_path: str | os.PathLike, *, progress: bool = True) -> ModelRef:
        """Reference a registered model name or a model file (hashes the file once).

        Raises
        ------
        ModelError
            Missing file or unknown name (listing the registered ones), as :func:`load_model`.
        """
        name = os.fspath(name_or_path)
        bare = _is_bare_name(name_or_path)
        entries = registry()
        known = set(entries) | {k.removesuffix(SUFFIX) for k in entries}
        registered = bare and ALIASES.get(name, name) in known
        path = Path(name)
        if not registered and path.is_file():
            return cls(_sha256(path), str(path.resolve()), None)
        if not registered and (not bare or path.suffix):
            raise ModelError(
                f"no model file {name!r}; give the path of a {SUFFIX} model written by "
                "DiffusionModel.save, or a registered name: "
                f"{sorted(k.removesuffix(SUFFIX) for k in entries)}."
            )
        found = fetch_weights(name, progress=progress)
        return cls(_sha256(found), str(found), name)

    def _locate(self) -> Path:
        if self.path and Path(self.path).is_file() and _sha256(self.path) == self.sha256:
            return Path(self.path)
        if self.name:
            found = fetch_weights(self.name, progress=False)
            if _sha256(found) == self.sha256:
                return found
        raise ModelError(
            f"model file with sha256 {self.sha256} not found on this worker (path "
            f"{self.path!r}, name {self.name!r}); put the file at the same path on every worker, "
            "or use a registered model name so workers fetch it themselves."
        )

    def resolve(
        self, device: str | torch.device | None = "cpu"
    ) -> DiffusionModel | LatentDiffusionModel:
        """The model on ``device`` (None: the CPU), read once per process and device (the
        cache shared with :func:`load_model`, keyed by the reference: a model's ``reference``
        is always the one it was loaded through)."""
        dev = str(torch.device(device or "cpu"))
        key = (self, dev)
        return _MODELS.get(key, lambda: _load_file(self._locate(), dev, self))


def _load_file(
    path: Path, device: str, reference: ModelRef
) -> DiffusionModel | LatentDiffusionModel:
    """Read a model file with the reader of its header's ``kind`` (pixel or latent)."""
    cls = LatentDiffusionModel if model_kind(path) == "latent" else DiffusionModel
    return cls.load(path, device=device, reference=reference)


def model_cache_stats() -> dict[str, int]:
    """This process's model cache counters: ``loads`` (files read) and ``hits``."""
    return _MODELS.stats()


def clear_model_cache() -> None:
    """Forget this process's loaded models (and reset the counters)."""
    _MODELS.clear()


def load_model(
    name_or_path: str | os.PathLike, *, device: str | torch.device | None = "cpu",
    progress: bool = True,
) -> DiffusionModel | LatentDiffusionModel:
    """Load a diffusion model by registered name or from a file written by ``DiffusionModel.save``.

    The one way to load a model. A registered name given as a plain string with no directory
    part (``"default"``, ``"xdiffsr-default"``, ``"xdiffsr-default.safetensors"``) goes through
    :func:`fetch_weights`. Anything else is a path: an existing file is loaded; a missing one
    raises "no model file"; an unregistered bare name without a suffix raises "unknown model"
    with the list of registered names.

    The model is read once per process and device: loading the same file (same path or name,
    same sha256) again returns the same object (:func:`clear_model_cache` forgets them). It
    carries its :class:`ModelRef` as ``model.reference``, so lazy ``super_resolve(...,
    chunks=...)`` graphs and :func:`xdiffsr.reconstruct_to_zarr` tasks carry only the reference
    and dask workers load the file themselves (:meth:`ModelRef.resolve`, the same cache).

    Parameters
    ----------
    name_or_path : str or path
        Registered model name or alias, or a ``.safetensors`` file.
    device : str or torch.device
        Torch device to put the weights on (None: the CPU).
    progress : bool
        Progress bar if a download is needed.

    Returns
    -------
    DiffusionModel or LatentDiffusionModel
        By the ``kind`` in the file's header (a latent model: ``"latent"``, see
        :mod:`xdiffsr.models.latent`).

    Raises
    ------
    ModelError
        Missing file, unknown name (listing the available ones), bad hash or unreadable file.
    """
    return ModelRef.of(name_or_path, progress=progress).resolve(device)


#: The former name of :func:`load_model` (the same function).
open_model = load_model
