"""Two real text corpora that ship as Debian packages: English and German fortune cookies.

``fortunes`` (English quotations, jokes, poems) is the pre-training corpus and ``fortunes-de``
(German sayings, jokes, poems) the fine-tuning one: a real shift of language on the same genre.
Each package is fetched once with ``apt-get download`` into the cache (``$SINE_FIELDS_CACHE``,
default ``~/.cache/sine-fields``), pinned by the sha256 of the ``.deb`` and unpacked with the
standard library; nothing is installed. Text is modelled as raw UTF-8 bytes (vocabulary 256), so
no tokenizer has to be downloaded either.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from sine_fields.data.debian import debian_members, debian_package
from sine_fields.data.recipes import Archive, DataError

__all__ = ["CORPORA", "Corpus", "CorpusSplit", "DataError", "load_corpus"]

_ROOT = "usr/share/games/fortunes/"


@dataclass(frozen=True)
class Corpus:
    """One Debian fortune package and the cookie files used from it."""

    package: Archive
    language: str
    files: tuple[str, ...]
    """Members inside the package; ASCII-art files are left out (pictures, not language)."""


CORPORA: dict[str, Corpus] = {
    "en": Corpus(
        package=debian_package(
            "fortunes", "1:1.99.1-7.3", "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"
        ),
        language="English",
        files=tuple(
            _ROOT + name
            for name in (
                "art computers cookie debian definitions disclaimer drugs education ethnic food goedel humorists "
                "kids knghtbrd law linux linuxcookie love magic medicine men-women miscellaneous news paradoxum "
                "people perl pets platitudes politics pratchett science songs-poems sports startrek tao "
                "translate-me wisdom work zippy"
            ).split()
        ),
    ),
    "de": Corpus(
        package=debian_package("fortunes-de", "0.35-1", "03fe7a7912935bd3d4e02e38d79ef32a289097f8718d4488c409595abce067a0"),
        language="German",
        files=tuple(
            _ROOT + "de/" + name
            for name in (
                "anekdoten bahnhof beilagen brot channel-debian.fortunes computer debian dessert doppelsinnig "
                "elefanten fussball gedichte hauptgericht holenlassen huhn infodrom kalt kinderzitate kuchen "
                "letzteworte lieberals linuxtag loewe mathematiker ms murphy namen plaetzchen quiz regeln salat "
                "sauce sicherheitshinweise sprichworte sprichwortev sprueche stilblueten suppe tips translations "
                "unfug vornamen vorspeise warmduscher witze woerterbuch wusstensie zitate"
            ).split()
        ),
    ),
}


@dataclass
class CorpusSplit:
    """Byte streams (``uint8`` tensors) of whole cookies, split by cookie, never inside one."""

    name: str
    train: Tensor
    validation: Tensor
    test: Tensor
    cookies: dict[str, int]
    """How many cookies went to each part."""


def _cookies(text: bytes) -> list[bytes]:
    """A fortune file holds cookies separated by lines that are a single ``%``."""
    cookies, current = [], []
    for line in text.split(b"\n"):
        if line.strip() == b"%":
            cookies.append(b"\n".join(current).strip())
            current = []
        else:
            current.append(line)
    cookies.append(b"\n".join(current).strip())
    return [c for c in cookies if c]


def _stream(cookies: list[bytes]) -> Tensor:
    # A blank line between cookies, as fortune prints them; the model learns where one ends.
    data = b"\n\n".join(cookies) + b"\n\n"
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def load_corpus(name: str, validation_fraction: float = 0.05, test_fraction: float = 0.1, seed: int = 0) -> CorpusSplit:
    """Fetch (once), unpack and split one corpus; the split depends only on ``seed`` and the package.

    Raises:
        DataError: the package cannot be fetched or does not match its sha256 (the message names it).
    """
    if name not in CORPORA:
        raise ValueError(f"corpus must be one of {', '.join(CORPORA)}, got {name!r}")
    corpus = CORPORA[name]
    try:
        paths = debian_members(corpus.package, list(corpus.files))
    except DataError as error:
        raise DataError(f"Debian package {corpus.package.filename.split('_')[0]!r} ({corpus.language} text): {error}") from None
    cookies: list[bytes] = []
    for path in paths:
        cookies.extend(_cookies(Path(path).read_bytes()))
    # Shuffle whole cookies so every part mixes all files (topics), with a fixed seed.
    random.Random(seed).shuffle(cookies)
    n_test = int(len(cookies) * test_fraction)
    n_val = int(len(cookies) * validation_fraction)
    test, validation, train = cookies[:n_test], cookies[n_test : n_test + n_val], cookies[n_test + n_val :]
    return CorpusSplit(
        name=name,
        train=_stream(train),
        validation=_stream(validation),
        test=_stream(test),
        cookies={"train": len(train), "validation": len(validation), "test": len(test)},
    )
