"""Finding checkpoint files: local folders, the Hugging Face cache, the Hub (probed once, through the proxy)."""

import functools
import os
import re
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from checkpoint_io.errors import ModelNotFoundError

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def looks_like_repo_id(source: str) -> bool:
    return bool(REPO_ID.match(source)) and not Path(source).exists()


def hub_reachable() -> bool:
    """Whether the Hugging Face Hub can be reached: False in offline mode (HF_HUB_OFFLINE), or when no TCP
    connection opens within 3 s to the Hub, or to the proxy that the environment routes it through.

    Without this check an unreachable Hub (or a dead proxy) costs ~25 s of retries per file before the cache
    is used. A proxy that accepts connections is trusted to reach the Hub.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urllib.parse.urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = _proxy_for(url.scheme, host)
    if proxy is not None:
        host, port = proxy
    return _can_connect(host, port)


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """(host, port) of the proxy the environment (HTTPS_PROXY, ALL_PROXY, NO_PROXY, ...) sets for `host`."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parsed = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
    default_port = 443 if parsed.scheme == "https" else 1080 if parsed.scheme.startswith("socks") else 80
    return parsed.hostname or "", parsed.port or default_port


@functools.cache  # once per process
def _can_connect(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_file(repo_id: str, filename: str, required: bool = True) -> Path | None:
    """Download one file of a Hub repo into the standard Hugging Face cache (or find it there).

    Returns None when the file is not available and `required` is False. When the Hub cannot be reached
    only the cache is consulted.
    Raises:
        ModelNotFoundError: a required file that is neither cached nor downloadable, or no such repo.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=not hub_reachable()))
    except LocalEntryNotFoundError:  # offline and not cached (a subclass of EntryNotFoundError: test it first)
        if not required:
            return None
        raise ModelNotFoundError(
            f"cannot download {filename!r} of {repo_id!r}: the Hub is unreachable and the file is not cached. "
            f"Download it once with network access (e.g. `hf download {repo_id}`) or pass a local folder"
        ) from None
    except EntryNotFoundError:
        if required:
            raise ModelNotFoundError(f"the Hub repo {repo_id!r} has no file {filename!r}") from None
        return None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"{repo_id!r} is neither a local path nor a Hugging Face Hub repo") from None


def file_getter(source: str | os.PathLike) -> Callable[[str], Path | None]:
    """A `name -> Path | None` function over a local folder or a Hub repo id."""
    if Path(source).is_dir():
        folder = Path(source)
        return lambda name: folder / name if (folder / name).is_file() else None
    return lambda name: hub_file(str(source), name, required=False)
